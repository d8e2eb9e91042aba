//! The monitor's output to the sink ([`SinkOutput`]), and the monitor's counts a ledger record carries
//! ([`upstream_counts`]).

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use cnlink_procmon::{EventKind, LostEvents, MonitorCounters, ProcRecord};
use cnlink_sink::UpstreamCounts;

use super::stage::SinkStage;
use crate::monitor::output::Output;

/// Every record's and every loss's native JSON into the spool (the event kind is the subject's last token:
/// `fork`, `clone`, `exec`, ..., `lost`), one `write` per batch. The main loop keeps the other reference, for
/// the ledger and the reports.
pub(crate) struct SinkOutput(pub(crate) Rc<RefCell<SinkStage>>);

impl Output for SinkOutput {
    fn wants_json(&self) -> bool {
        true
    }

    fn record(&mut self, rec: &ProcRecord, json: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().submit(EventKind::of(&rec.event.data).name(), json);
        Ok(())
    }

    fn lost(&mut self, _: &LostEvents, json: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().submit("lost", json);
        Ok(())
    }

    fn batch_end(&mut self, _: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().flush(Instant::now());
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
