//! The receive thread (see the [module documentation](super)).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cnlink::proc::ProcItem;
use cnlink::wire::EventData;

use super::prefetch::{observation_bytes, Decision, Prefetcher, REDRAIN};
use super::queue::Queue;
use super::source::{monotonic_ns, EventSource, Received, SourceCounters};
use super::{Batch, Msg, Prefetch};
use crate::loss::{LossCause, LostEvents};
use crate::procfs::Wants;
use crate::record::{RecorderEvent, RecorderTx};

/// How long the receive thread waits for the socket before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(100);
/// A drain that brings this many items means a storm: the thread sleeps between drains.
const STORM: usize = 64;
/// Above this many events a second, the thread sleeps between drains even when a program may be starting.
const EAGER_MAX_RATE: u64 = 20_000;
/// A longer batch latency asks for fewer wake-ups over early `/proc` reads: the thread is never eager.
const EAGER_MAX_LATENCY: Duration = Duration::from_millis(20);
/// The thread is eager while at least one event in this many starts a program.
const EAGER_MIN_SHARE: u64 = 8;
/// The window over which the rate is measured.
const RATE_WINDOW_NS: u64 = 50_000_000;
/// A batch this long is handed on at once.
const HANDOFF: usize = 16 * 1024;

/// The source's counters, mirrored for the consumer after every receive.
#[derive(Debug, Default)]
pub(crate) struct SourceStats {
    datagrams: AtomicU64,
    malformed: AtomicU64,
    rejected: AtomicU64,
    filtered: AtomicU64,
}

impl SourceStats {
    fn set(&self, c: SourceCounters) {
        self.datagrams.store(c.datagrams, Ordering::Relaxed);
        self.malformed.store(c.malformed, Ordering::Relaxed);
        self.rejected.store(c.rejected, Ordering::Relaxed);
        self.filtered.store(c.filtered, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> SourceCounters {
        SourceCounters {
            datagrams: self.datagrams.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
        }
    }
}

/// Everything the receive thread owns.
pub(crate) struct ReceiveThread {
    pub(crate) source: Box<dyn EventSource>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) stop: Arc<AtomicBool>,
    /// How long a batch waits for more events before it is handed on, and the sleep between drains in a storm.
    pub(crate) latency: Duration,
    pub(crate) prefetcher: Option<Prefetcher>,
    pub(crate) recorder: Option<RecorderTx>,
    pub(crate) counters: Arc<SourceStats>,
    /// The monitor's own process: nothing is read for its events.
    pub(crate) own_pid: Option<i32>,
}

/// Whether an item may be followed by an exec to read at once: a new process, or an exec (a program that
/// execs again, as shells and wrappers do).
fn starts_a_program(item: &ProcItem) -> bool {
    match item {
        ProcItem::Event(e) => match e.data {
            EventData::Fork { child_pid, child_tgid, .. } => child_pid == child_tgid,
            EventData::Exec { .. } => true,
            _ => false,
        },
        _ => false,
    }
}

/// Events received per window: how many, and how many started a program.
#[derive(Debug, Default)]
struct Rate {
    start_ns: u64,
    count: u64,
    starts: u64,
    /// The last complete window's counts.
    last: (u64, u64),
}

impl Rate {
    fn add(&mut self, now_ns: u64, n: u64, starts: u64) {
        if now_ns.saturating_sub(self.start_ns) >= RATE_WINDOW_NS {
            // A window with nothing in it since the last complete one counts as a quiet one.
            let windows = now_ns.saturating_sub(self.start_ns) / RATE_WINDOW_NS;
            self.last = if windows > 1 { (0, 0) } else { (self.count, self.starts) };
            self.start_ns = now_ns;
            self.count = 0;
            self.starts = 0;
        }
        self.count += n;
        self.starts += starts;
    }

    /// Whether events come slower than [`EAGER_MAX_RATE`], and programs start in at least one event of
    /// [`EAGER_MIN_SHARE`] (a thread storm with a program now and then is batched).
    fn eager(&self) -> bool {
        let max = EAGER_MAX_RATE * RATE_WINDOW_NS / 1_000_000_000;
        let (count, starts) = (self.count + self.last.0, self.starts + self.last.1);
        self.last.0 < max && self.count < max && starts > 0 && starts * EAGER_MIN_SHARE >= count
    }
}

/// How a receive ended other than with items.
enum Stop {
    End,
    Failed(cnlink::Error),
}

impl ReceiveThread {
    /// Receives until stopped, the source ends, or receiving fails; the last message queued is always
    /// [`Msg::End`].
    ///
    /// After each wake-up, the thread lets events accumulate for `latency` before it drains the socket again
    /// and hands the batch on (fewer wake-ups), except while it is *eager*: it reads `/proc` itself, events
    /// come at a modest rate (under [`EAGER_MAX_RATE`] a second, over the last [`RATE_WINDOW_NS`] or two), and
    /// programs are starting (new processes and execs are one event in [`EAGER_MIN_SHARE`] or more), so each
    /// exec must be read the moment it comes; and `latency` is at most [`EAGER_MAX_LATENCY`] (a longer one asks
    /// for fewer wake-ups). Then it wakes for each datagram, and hands the batch on once it is `latency` old.
    pub(crate) fn run(mut self) {
        let kernel_filtered = self.source.kernel_filtered();
        let latency_ns = self.latency.as_nanos() as u64;
        let mut batch = self.queue.spare();
        // When the pending batch got its first item.
        let mut first_ns: Option<u64> = None;
        let mut rate = Rate::default();
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let before = batch.input.items.len();
            let wait = match (stopping, first_ns) {
                (true, _) => Duration::ZERO,
                (false, Some(t)) => Duration::from_nanos((t + latency_ns).saturating_sub(monotonic_ns())),
                (false, None) => POLL,
            };
            let mut ended = self.receive_and_scan(&mut batch, wait, kernel_filtered).err();
            let got = batch.input.items.len() - before;
            let mut due = stopping || ended.is_some() || latency_ns == 0;
            if got > 0 || !batch.input.losses.is_empty() {
                first_ns.get_or_insert_with(monotonic_ns);
                let starts = batch.input.items[before..].iter().filter(|i| starts_a_program(i)).count();
                rate.add(monotonic_ns(), got as u64, starts as u64);
                let eager =
                    self.prefetcher.is_some() && self.latency <= EAGER_MAX_LATENCY && got < STORM && rate.eager();
                if !eager && !due {
                    std::thread::sleep(self.latency);
                    let more = batch.input.items.len();
                    ended = self.receive_and_scan(&mut batch, Duration::ZERO, kernel_filtered).err();
                    let starts = batch.input.items[more..].iter().filter(|i| starts_a_program(i)).count();
                    rate.add(monotonic_ns(), (batch.input.items.len() - more) as u64, starts as u64);
                    due = true;
                }
            }
            due |= batch.input.items.len() >= HANDOFF
                || first_ns.is_some_and(|t| monotonic_ns().saturating_sub(t) >= latency_ns);
            if due && !batch.is_empty() {
                self.hand_over(&mut batch);
                first_ns = None;
            }
            match ended {
                Some(Stop::Failed(e)) => {
                    self.queue.push(Msg::Failed(e));
                    break;
                }
                Some(Stop::End) => break,
                None if stopping => break,
                None => {}
            }
        }
        self.queue.push(Msg::End);
    }

    /// One receive (waiting at most `wait`), then the scan of what came.
    fn receive_and_scan(&mut self, batch: &mut Batch, wait: Duration, kernel_filtered: bool) -> Result<(), Stop> {
        let before = batch.input.items.len();
        let losses = batch.input.losses.len();
        self.receive(batch, Some(wait))?;
        if batch.input.items.len() > before || batch.input.losses.len() > losses {
            self.scan(batch, before, kernel_filtered)?;
        }
        Ok(())
    }

    /// One receive into `batch`; the receive time of what came is kept for its losses.
    fn receive(&mut self, batch: &mut Batch, wait: Option<Duration>) -> Result<(), Stop> {
        let r = self.source.recv(&mut batch.input, wait);
        self.counters.set(self.source.counters());
        match r {
            Ok(Received::Ready { at_ns }) => {
                batch.at_ns = at_ns;
                Ok(())
            }
            Ok(Received::End) => Err(Stop::End),
            Err(e) => Err(Stop::Failed(e)),
        }
    }

    /// Goes through the items from `from`: turns loss items into losses, shows losses and overruns to the
    /// recorder, and reads `/proc` for execs (and forks) at once where the policy allows, draining the source
    /// again every [`REDRAIN`] while it reads.
    fn scan(&mut self, batch: &mut Batch, from: usize, kernel_filtered: bool) -> Result<(), Stop> {
        let mut i = from;
        let mut drained = monotonic_ns();
        let redrain = REDRAIN.as_nanos() as u64;
        while i < batch.input.items.len() {
            let mut read = false;
            match batch.input.items[i] {
                ProcItem::Event(ev) => read = self.prefetch(batch, i, &ev),
                ProcItem::Lost(loss) => {
                    let cause = if kernel_filtered { LossCause::SocketDrops } else { LossCause::SeqGap };
                    let before = match batch.input.items.get(i + 1) {
                        Some(ProcItem::Event(e)) => Some((e.cpu, e.seq)),
                        Some(ProcItem::Ack { cpu, seq, .. }) => Some((*cpu, *seq)),
                        _ => None,
                    };
                    let cpu = before.map(|b| b.0);
                    let (count, exact) = (loss.count(), loss.is_exact());
                    let l = LostEvents { cause, count, exact, cpu, timestamp_ns: batch.at_ns };
                    batch.input.losses.push((i, l));
                    if let Some(r) = &mut self.recorder {
                        r.send(RecorderEvent::Lost { loss: l, before });
                    }
                }
                ProcItem::Overrun => {
                    if let Some(r) = &mut self.recorder {
                        r.send(RecorderEvent::Overrun { timestamp_ns: batch.at_ns });
                    }
                }
                _ => {}
            }
            if read && monotonic_ns().saturating_sub(drained) >= redrain {
                self.receive(batch, Some(Duration::ZERO))?;
                drained = monotonic_ns();
            }
            i += 1;
        }
        Ok(())
    }

    /// Reads what event `i` needs, if anything and if allowed; returns whether it read.
    fn prefetch(&mut self, batch: &mut Batch, i: usize, ev: &cnlink::proc::Event) -> bool {
        let Some(p) = &mut self.prefetcher else { return false };
        let (pid, wants) = match ev.data {
            EventData::Exec { process_tgid, .. } if p.policy.exec => (process_tgid, p.exec_wants()),
            EventData::Fork { child_pid, child_tgid, .. } if p.policy.fork_stat && child_pid == child_tgid => {
                (child_tgid, Wants::STAT)
            }
            _ => return false,
        };
        if pid <= 0 || Some(pid) == self.own_pid {
            return false;
        }
        let queued = self.queue.observation_bytes() + batch.observation_bytes;
        if p.decide(monotonic_ns(), ev.timestamp_ns, queued) != Decision::Read {
            return false;
        }
        let observation = p.read(pid, wants, monotonic_ns);
        batch.observation_bytes += observation_bytes(&observation);
        batch.prefetched.push((i, Prefetch { observation, wants }));
        true
    }

    /// Queues the batch and starts a new one; a batch that does not fit loses its events, which are counted
    /// and reported as a loss of their own (the recorder sees it after the dropped batch's datagrams).
    fn hand_over(&mut self, batch: &mut Batch) {
        if batch.input.losses.windows(2).any(|w| w[0].0 > w[1].0) {
            batch.input.losses.sort_by_key(|l| l.0);
        }
        if let Some(r) = &self.recorder {
            batch.datagrams = r.datagrams();
        }
        let full = std::mem::replace(batch, self.queue.spare());
        if let Err(mut b) = self.queue.try_push(full) {
            let n = b.drop_events();
            let l = LostEvents::exact(LossCause::Queue, n, monotonic_ns());
            b.input.losses.insert(0, (0, l));
            if let Some(r) = &mut self.recorder {
                r.send(RecorderEvent::Lost { loss: l, before: None });
            }
            self.queue.push(Msg::Batch(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn eager_while_programs_start_at_a_modest_rate() {
        let mut r = Rate::default();
        assert!(!r.eager(), "nothing seen");
        // 1,200 programs a second: fork, exec, exit each.
        for i in 0..120 {
            r.add(i * MS, 3, 2);
        }
        assert!(r.eager());
        // A thread storm with a program now and then.
        let mut t = Rate::default();
        for i in 0..120 {
            t.add(i * MS, 40, u64::from(i % 20 == 0));
        }
        assert!(!t.eager());
        // Programs starting faster than the limit.
        let mut f = Rate::default();
        for i in 0..120 {
            f.add(i * MS, 30, 20);
        }
        assert!(!f.eager());
        // After a quiet spell, the first program makes it eager at once.
        f.add(1_000 * MS, 1, 1);
        assert!(f.eager());
    }
}
