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
/// A drain that brings this many items means a storm: from then on the thread sleeps between drains.
const STORM: usize = 64;
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

/// How a receive ended other than with items.
enum Stop {
    End,
    Failed(cnlink::Error),
}

impl ReceiveThread {
    /// Receives until stopped, the source ends, or receiving fails; the last message queued is always
    /// [`Msg::End`].
    pub(crate) fn run(mut self) {
        let kernel_filtered = self.source.kernel_filtered();
        let latency_ns = self.latency.as_nanos() as u64;
        let mut batch = self.queue.spare();
        // When the pending batch got its first item.
        let mut first_ns: Option<u64> = None;
        let mut storm = false;
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let before = batch.input.items.len();
            let losses_before = batch.input.losses.len();
            let wait = if stopping {
                Duration::ZERO
            } else if storm && !self.latency.is_zero() {
                std::thread::sleep(self.latency);
                Duration::ZERO
            } else {
                match first_ns {
                    Some(t) => Duration::from_nanos((t + latency_ns).saturating_sub(monotonic_ns())),
                    None => POLL,
                }
            };
            let mut ended = self.receive(&mut batch, Some(wait)).err();
            if ended.is_none() && (batch.input.items.len() > before || batch.input.losses.len() > losses_before) {
                first_ns.get_or_insert_with(monotonic_ns);
                ended = self.scan(&mut batch, before, kernel_filtered).err();
            }
            storm = batch.input.items.len() - before >= STORM;
            let due = stopping
                || storm
                || ended.is_some()
                || latency_ns == 0
                || batch.input.items.len() >= HANDOFF
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
            match batch.input.items[i] {
                ProcItem::Event(ev) => {
                    if self.prefetch(batch, i, &ev) && monotonic_ns().saturating_sub(drained) >= redrain {
                        self.receive(batch, Some(Duration::ZERO))?;
                        drained = monotonic_ns();
                    }
                }
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
            i += 1;
        }
        Ok(())
    }

    /// Reads what event `i` needs, if anything and if allowed; returns whether it read.
    fn prefetch(&mut self, batch: &mut Batch, i: usize, ev: &cnlink::proc::Event) -> bool {
        let Some(p) = &mut self.prefetcher else { return false };
        let (pid, wants) = match ev.data {
            EventData::Exec { process_tgid, .. } if p.policy.exec => (process_tgid, p.wants),
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
