//! [`SinkStage`]: the output stage of `cnlink proc --sink`. The monitor's consumer thread hands it every event's
//! JSON and every loss; it stores them in the spool (never waiting for the network: the publisher runs on its
//! own thread), writes a ledger record every few seconds and at exit, and says on stderr what the servers do.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnlink_sink::publish::{Publisher, PublisherStatus};
use cnlink_sink::{Identity, Sink, SpoolStats, UpstreamCounts};

use super::args::SinkArgs;
use super::upstream::UpstreamBase;
use crate::service::metrics::{SinkCounters, SinkMetrics};

/// How often the same kind of trouble is said again on stderr.
const REPEAT_EVERY: Duration = Duration::from_secs(10);
/// Without any answer from the servers for this long after start, say so.
const NO_ANSWER_AFTER: Duration = Duration::from_secs(5);

/// The sink as `cnlink proc` drives it. See the [module documentation](self).
pub(crate) struct SinkStage {
    sink: Sink,
    publisher: Publisher,
    servers: String,
    stream: String,
    dir: PathBuf,
    drain_timeout: Duration,
    started: Instant,
    upstream: UpstreamBase,
    /// Events the spool refused (not a JSON object, or larger than a record may be): never expected.
    refused: u64,
    lag: LagClock,
    last_seq: u64,
    said: Said,
}

/// What was already said on stderr, so that each thing is said once, and trouble at most every
/// [`REPEAT_EVERY`].
#[derive(Default)]
struct Said {
    first_outcome: bool,
    no_answer: bool,
    warnings: usize,
    /// Trouble was said and has not been said over since.
    in_trouble: bool,
    /// The publisher's error count when trouble was last said (or said over).
    errors: u64,
    /// When trouble was last said.
    at: Option<Instant>,
    /// The publisher's acks and errors at the last look.
    acked_before: u64,
    errors_before: u64,
    write_errors: u64,
    write_said_at: Option<Instant>,
}

impl SinkStage {
    /// Opens the spool (recovering what an earlier run left) and starts the publisher; `None` without
    /// `--sink`. A spool that cannot be opened is an error (before the monitor subscribes); servers that do
    /// not answer are not: the spool fills meanwhile, and the first outcome is said by [`SinkStage::tick`].
    pub(crate) fn start(args: &SinkArgs) -> anyhow::Result<Option<SinkStage>> {
        let Some(publish) = args.publish_config()? else { return Ok(None) };
        let identity = identity(args.sink_host_id.as_deref())?;
        let config = args.sink_config(identity.clone());
        let dir = config.spool.dir.clone();
        let (sink, recovery) = Sink::open(config).with_context(|| format!("--sink-spool {}", dir.display()))?;
        if recovery.pending_records > 0 || recovery.torn > 0 || recovery.bad_segments > 0 {
            eprintln!(
                "cnlink: sink: spool {}: {} records of an earlier run to publish first{}{}",
                dir.display(),
                recovery.pending_records,
                if recovery.torn > 0 {
                    format!(", {} torn record cut off (counted)", recovery.torn)
                } else {
                    "".into()
                },
                if recovery.bad_segments > 0 {
                    format!(", {} unreadable segment files removed", recovery.bad_segments)
                } else {
                    "".into()
                },
            );
        }
        let upstream = UpstreamBase::load(&dir, &identity.boot_id);
        let servers = publish.connect.servers_text();
        let stream = publish.stream.name.clone();
        let publisher = Publisher::start(sink.handle(), publish).context("starting the sink's publisher")?;
        Ok(Some(SinkStage {
            sink,
            publisher,
            servers,
            stream,
            dir,
            drain_timeout: args.sink_drain_timeout,
            started: Instant::now(),
            upstream,
            refused: 0,
            lag: LagClock::default(),
            last_seq: 0,
            said: Said::default(),
        }))
    }

    /// Stores one event (`kind` names the subject's last token; `json` is a JSON object). Never waits for the
    /// network; a full spool evicts its oldest records and a full disk drops these, both counted.
    pub(crate) fn submit(&mut self, kind: &str, json: &[u8]) {
        match self.sink.submit(kind, json) {
            Ok(seq) => self.last_seq = seq,
            Err(e) => {
                self.refused += 1;
                if self.refused == 1 {
                    eprintln!("cnlink: sink: an event was refused ({e}); such events are counted, not published");
                }
            }
        }
    }

    /// Writes what was submitted to the spool (one `write`); call it when the batch at hand is done.
    pub(crate) fn flush(&mut self, now: Instant) {
        // A failed write (a full disk) is counted by the spool and said by `tick`.
        let _ = self.sink.flush();
        self.lag.written(self.last_seq, now);
    }

    /// From the main loop: a ledger record when one is due (with the monitor's counts, `upstream`), and what
    /// there is to say about the servers and the spool.
    pub(crate) fn tick(&mut self, now: Instant, upstream: impl FnOnce() -> UpstreamCounts) {
        if self.sink.ledger_due(now) {
            let counts = self.upstream.add(&upstream());
            // A failed write is counted and said below; the next ledger tries again.
            let _ = self.sink.write_ledger(now, &counts, false);
            self.upstream.save(&counts);
        }
        let status = self.publisher.status();
        let stats = self.sink.stats();
        self.say(now, &status, &stats);
    }

    fn say(&mut self, now: Instant, status: &PublisherStatus, stats: &SpoolStats) {
        let said = &mut self.said;
        match &status.first_outcome {
            Some(outcome) if !said.first_outcome => {
                said.first_outcome = true;
                match outcome {
                    Ok(()) => eprintln!(
                        "cnlink: sink: publishing to {} (stream {}), spool {}",
                        self.servers,
                        self.stream,
                        self.dir.display()
                    ),
                    Err(e) => {
                        eprintln!(
                            "cnlink: sink: {e}; events wait in the spool {} and are published once it works",
                            self.dir.display()
                        );
                        said.in_trouble = true;
                        said.errors = status.errors;
                        said.at = Some(now);
                    }
                }
            }
            None if !said.no_answer && now.saturating_duration_since(self.started) >= NO_ANSWER_AFTER => {
                said.no_answer = true;
                eprintln!(
                    "cnlink: sink: no answer from {} after {NO_ANSWER_AFTER:?}; events wait in the spool {}",
                    self.servers,
                    self.dir.display()
                );
            }
            _ => {}
        }
        for warning in status.warnings.iter().skip(said.warnings) {
            eprintln!("cnlink: sink: {warning}");
        }
        said.warnings = said.warnings.max(status.warnings.len());
        // Acks since the last look, and no failure: it works (again).
        let working = status.acked > said.acked_before && status.errors == said.errors_before;
        (said.acked_before, said.errors_before) = (status.acked, status.errors);
        if said.first_outcome && said.in_trouble && working {
            said.in_trouble = false;
            said.errors = status.errors;
            eprintln!("cnlink: sink: publishing again to {} ({} records waiting)", self.servers, stats.lag_records);
        } else if said.first_outcome
            && status.errors > said.errors
            && said.at.is_none_or(|at| now.saturating_duration_since(at) >= REPEAT_EVERY)
        {
            said.in_trouble = true;
            said.errors = status.errors;
            said.at = Some(now);
            eprintln!(
                "cnlink: sink: {}; {} records wait in the spool",
                status.last_error.as_deref().unwrap_or("publishing failed"),
                stats.lag_records
            );
        }
        if stats.write_errors > self.said.write_errors
            && self.said.write_said_at.is_none_or(|at| now.saturating_duration_since(at) >= REPEAT_EVERY)
        {
            self.said.write_errors = stats.write_errors;
            self.said.write_said_at = Some(now);
            eprintln!(
                "cnlink: sink: {}; {} records dropped so far (counted in the ledger); writing goes on",
                stats.last_error.as_deref().unwrap_or("spool write failed"),
                stats.state.write_dropped
            );
        }
    }

    /// The counters for the metrics and the status line.
    pub(crate) fn counters(&mut self, now: Instant) -> SinkCounters {
        let status = self.publisher.status();
        let stats = self.sink.stats();
        let floor = stats.state.acked_seq.max(stats.state.evicted_through);
        SinkCounters {
            connected: status.connected && status.stream_ready,
            published: status.published,
            acked: status.acked,
            errors: status.errors,
            lag_records: stats.lag_records,
            lag: if stats.lag_records == 0 { Duration::ZERO } else { self.lag.age(floor, now) },
            spool_bytes: stats.spool_bytes,
            spool_high_water_bytes: stats.high_water_bytes,
            evicted: stats.state.evicted + stats.state.evicted_unconfirmed,
            torn: stats.state.torn,
            write_dropped: stats.state.write_dropped + self.refused,
        }
    }

    /// Copies the counters to the metrics; returns the status line's sink part.
    pub(crate) fn report(&mut self, now: Instant, metrics: Option<&SinkMetrics>) -> String {
        let c = self.counters(now);
        if let Some(m) = metrics {
            m.update(&c);
        }
        crate::service::reports::sink_status(&c)
    }

    /// At exit: the final ledger record, then up to `--sink-drain-timeout` for the spool to drain; says what is
    /// left and the counters at the end (`cnlink: sink: at exit: ...`), and returns them.
    pub(crate) fn finish(mut self, upstream: &UpstreamCounts) -> SinkCounters {
        let counts = self.upstream.add(upstream);
        let deadline = Instant::now() + self.drain_timeout;
        let mut ledger = self.sink.write_ledger(Instant::now(), &counts, true);
        let mut drained = self.publisher.drain(deadline.saturating_duration_since(Instant::now()));
        if ledger.is_err() {
            // A full disk: what was published since has freed room; once more.
            ledger = self.sink.write_ledger(Instant::now(), &counts, true);
            drained = self.publisher.drain(deadline.saturating_duration_since(Instant::now()));
        }
        if let Err(e) = ledger {
            eprintln!("cnlink: sink: the final ledger record: {e}");
        }
        self.upstream.save(&counts);
        self.lag.written(self.sink.stats().committed_seq, Instant::now());
        let now = Instant::now();
        let status = self.publisher.status();
        let stats = self.sink.stats();
        self.say(now, &status, &stats);
        let counters = self.counters(now);
        if !drained {
            eprintln!(
                "cnlink: sink: {} records not yet acknowledged after {:?} stay in the spool {}: they are published \
                 at the next start",
                stats.lag_records,
                self.drain_timeout,
                self.dir.display()
            );
        }
        self.publisher.stop();
        eprintln!(
            "cnlink: sink: at exit: {} published, {} acked, {} waiting; spool high-water {} bytes; lost in the \
             spool: {} evicted, {} torn, {} not written",
            counters.published,
            counters.acked,
            counters.lag_records,
            counters.spool_high_water_bytes,
            counters.evicted,
            counters.torn,
            counters.write_dropped
        );
        counters
    }
}

/// The host and boot: `--sink-host-id` or `/etc/machine-id`, and the kernel's boot id.
fn identity(host_id: Option<&str>) -> anyhow::Result<Identity> {
    let read = |path: &str| -> anyhow::Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
        let id = text.trim();
        anyhow::ensure!(!id.is_empty(), "{path} is empty");
        Ok(id.to_owned())
    };
    let host_id = match host_id {
        Some(id) => id.to_owned(),
        None => read("/etc/machine-id").context("the sink's host id (give one with --sink-host-id)")?,
    };
    Ok(Identity { host_id, boot_id: read("/proc/sys/kernel/random/boot_id")? })
}

/// When records were written, to tell the age of the oldest one not yet acknowledged: `(last sequence
/// number written, when)`, at most one entry per [`LagClock::STEP`].
#[derive(Default)]
struct LagClock {
    written: VecDeque<(u64, Instant)>,
}

impl LagClock {
    const STEP: Duration = Duration::from_millis(250);
    /// A day of outage at one entry per step; past it the entries are coarser (the oldest stays right).
    const MAX: usize = 345_600;

    fn written(&mut self, seq: u64, now: Instant) {
        let full = self.written.len() >= Self::MAX;
        match self.written.back_mut() {
            Some((last, _)) if *last >= seq => {}
            Some((last, at)) if now.saturating_duration_since(*at) < Self::STEP || full => {
                *last = seq;
            }
            _ => self.written.push_back((seq, now)),
        }
    }

    /// How long ago the oldest record above `floor` (everything up to it is acknowledged) was written, at
    /// least.
    fn age(&mut self, floor: u64, now: Instant) -> Duration {
        while self.written.front().is_some_and(|&(seq, _)| seq <= floor) {
            self.written.pop_front();
        }
        self.written.front().map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lag_clock_gives_the_age_of_the_oldest_unacknowledged_write() {
        let t0 = Instant::now();
        let mut clock = LagClock::default();
        clock.written(10, t0);
        clock.written(20, t0 + Duration::from_millis(100)); // within a step: merged into the first entry
        clock.written(30, t0 + Duration::from_secs(1));
        clock.written(30, t0 + Duration::from_secs(2)); // nothing new
        let now = t0 + Duration::from_secs(3);
        assert_eq!(clock.age(5, now), Duration::from_secs(3));
        assert_eq!(clock.age(20, now), Duration::from_secs(2));
        assert_eq!(clock.age(30, now), Duration::ZERO);
    }
}
