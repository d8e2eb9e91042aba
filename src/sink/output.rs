//! The monitor's output to the sink ([`SinkOutput`]), and the monitor's counts a ledger record carries
//! ([`upstream_counts`]).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use cnlink_procmon::{EventKind, LostEvents, MonitorCounters, ProcRecord};
use cnlink_sink::UpstreamCounts;

use super::stage::SinkStage;
use crate::monitor::clock::SharedClock;
use crate::monitor::output::Output;

/// Every record's and every loss's native JSON into the spool (the event kind is the subject's last token:
/// `fork`, `clone`, `exec`, ..., `lost`), one `write` per batch, with `realtime_offset_ns` added at the end: the
/// host's `CLOCK_REALTIME - CLOCK_MONOTONIC` for the event's time (from the writers' clock), so that a collector
/// prints the times this host would. The main loop keeps the other reference to the stage, for the ledger and
/// the reports.
pub(crate) struct SinkOutput {
    pub(crate) stage: Rc<RefCell<SinkStage>>,
    pub(crate) clock: SharedClock,
    /// The line with the key added.
    line: Vec<u8>,
}

impl SinkOutput {
    pub(crate) fn new(stage: Rc<RefCell<SinkStage>>, clock: SharedClock) -> SinkOutput {
        SinkOutput { stage, clock, line: Vec::with_capacity(4096) }
    }

    fn submit(&mut self, kind: &str, json: &[u8], timestamp_ns: u64) {
        let offset = self.clock.borrow().utc_offset_ns(timestamp_ns);
        with_offset(&mut self.line, json, offset);
        self.stage.borrow_mut().submit(kind, &self.line);
    }
}

/// `json` (one object, perhaps with its newline) with `"realtime_offset_ns":offset` as its last key.
pub(crate) fn with_offset(line: &mut Vec<u8>, json: &[u8], offset: i128) {
    line.clear();
    let json = json.trim_ascii_end();
    let body = json.strip_suffix(b"}").unwrap_or(json);
    line.extend_from_slice(body);
    if body.trim_ascii() != b"{" {
        line.push(b',');
    }
    line.extend_from_slice(b"\"realtime_offset_ns\":");
    line.extend_from_slice(itoa::Buffer::new().format(offset).as_bytes());
    line.push(b'}');
}

impl Output for SinkOutput {
    fn wants_json(&self) -> bool {
        true
    }

    fn record(&mut self, rec: &ProcRecord, json: &[u8]) -> io::Result<()> {
        self.submit(EventKind::of(&rec.event.data).name(), json, rec.event.timestamp_ns);
        Ok(())
    }

    fn lost(&mut self, l: &LostEvents, json: &[u8]) -> io::Result<()> {
        self.submit("lost", json, l.timestamp_ns);
        Ok(())
    }

    fn batch_end(&mut self, _: &[u8]) -> io::Result<()> {
        self.stage.borrow_mut().flush(Instant::now());
        Ok(())
    }
}

/// The monitor's cumulative losses and filtered events, as a ledger record carries them: kernel losses per
/// CPU (sequence gaps, charged to the CPU that revealed them), those with no CPU (socket drops with the
/// kernel-side filter, and gaps no CPU was known for), queue losses, and events the selection and the filters
/// left out.
pub(crate) fn upstream_counts(c: &MonitorCounters) -> UpstreamCounts {
    let l = &c.losses;
    let per_cpu: u64 = l.per_cpu.iter().sum();
    UpstreamCounts {
        kernel_lost_per_cpu: l.per_cpu.clone(),
        kernel_lost_other: l.socket_drops + l.seq_gap.saturating_sub(per_cpu),
        queue_lost: l.queue,
        filtered: c.received.iter().sum::<u64>().saturating_sub(c.shown.iter().sum()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnlink_procmon::{LossCause, LossCounts};

    #[test]
    fn the_clock_offset_is_the_last_key() {
        let mut line = Vec::new();
        with_offset(&mut line, b"{\"event\":\"exec\",\"pid\":1}\n", -5);
        assert_eq!(line, b"{\"event\":\"exec\",\"pid\":1,\"realtime_offset_ns\":-5}");
        with_offset(&mut line, b"{}", 1_764_300_000_000_000_000);
        assert_eq!(line, b"{\"realtime_offset_ns\":1764300000000000000}");
    }

    #[test]
    fn the_ledger_gets_every_loss_once() {
        let mut losses = LossCounts::default();
        losses.add(&LostEvents { cpu: Some(1), ..LostEvents::exact(LossCause::SeqGap, 4, 0) });
        losses.add(&LostEvents::exact(LossCause::SeqGap, 2, 0)); // no CPU known
        losses.add(&LostEvents::exact(LossCause::SocketDrops, 3, 0));
        losses.add(&LostEvents::exact(LossCause::Queue, 7, 0));
        let mut c = MonitorCounters { losses, ..Default::default() };
        c.received[0] = 10;
        c.shown[0] = 6;
        let u = upstream_counts(&c);
        assert_eq!(u.kernel_lost_per_cpu, [0, 4]);
        assert_eq!((u.kernel_lost_other, u.queue_lost, u.filtered), (5, 7, 4));
        // The ledger's kernel_lost is every kernel loss: 4 + 2 + 3.
        assert_eq!(u.kernel_lost_per_cpu.iter().sum::<u64>() + u.kernel_lost_other, 9);
    }
}
