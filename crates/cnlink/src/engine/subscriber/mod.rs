//! The proc connector subscription as a sans-IO state machine: `LISTEN` and its ack, the Linux 6.6 event filter
//! and the fallback to the legacy form, the per-CPU resync, the drop counter of a filtered socket, and the
//! `IGNORE`s that undo the subscription.
//!
//! Bytes and times go in ([`Subscriber::handle`], [`Subscriber::handle_overrun`],
//! [`Subscriber::handle_drop_count`], [`Subscriber::handle_timeout`], [`Subscriber::close`]); requests to send
//! come out of [`Subscriber::poll_transmit`], items and state changes out of [`Subscriber::poll_event`] (or
//! [`Subscriber::drain_items`], the fast path), and [`Subscriber::poll_timeout`] says when the next timer is due.
//! A driver owns two sockets: the main one, and while [`Subscriber::probe_wanted`] a probe joined to the same
//! group, which watches for the ack a filtered socket never sees.
//!
//! ```text
//!        6.6 filter wanted and the kernel is not known to be older
//! new ──┬──> Probing: filtered LISTEN, ack awaited on the probe ──────> Subscribed { kernel_filtered: true }
//!       │      │ no ack within min(ack_timeout, 250 ms)
//!       │      v
//!       └──> Listening: legacy LISTEN, ack awaited on the main socket ─> Subscribed { kernel_filtered: false }
//!              │ no ack within ack_timeout: Failed(NoAck); an ack with an errno: Failed(Refused)
//! close(), from any state: as many IGNOREs as the kernel counted LISTENs
//! ```
//!
//! What the kernel does with requests (spec §5.4): from 6.6 it keeps per-socket state, so a repeated `LISTEN`
//! counts once and one `IGNORE` undoes it; before 6.6 every `LISTEN` counts the global listener number up and every
//! `IGNORE` down, and the 8-byte filtered form is ignored. So before 6.6 (or when the release is unknown) this
//! engine sends the legacy `LISTEN` once, never again, and closes with one legacy `IGNORE` per legacy `LISTEN`
//! plus one filtered `IGNORE` if a filtered `LISTEN` went out (ignored by the old kernel, counted by a new one).
//!
//! The resync: every proc message carries its CPU's counter, so a `LISTEN` sent from CPU `c` comes back as an ack
//! that shows `c`'s counter at once. It closes each CPU's gap right after an overrun instead of whenever that CPU
//! next sends, and gives CPUs that have been silent a baseline. It runs only where it helps and costs nothing in
//! listener counts: when the first ack names a real CPU (old kernels send `0xffffffff` and bypass the counter) and
//! the kernel keeps per-socket state (6.6+). Right after the ack it sends one `LISTEN` from each CPU of the
//! affinity set that has not been heard from yet; after an overrun, one from each CPU of the set. The requests go
//! back to back (their acks are matched as they come), and a resync runs at most once per [`RESYNC_INTERVAL`].

mod config;
mod outputs;
mod release;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::wire::{self, CbId, CnMsgHdr, EventMask, McastOp, NlAddr, ProcInput, PROC_EVENT_ALL};

use super::cpus::CpuSet;
use super::loss::Loss;
use super::proc_stream::{ProcCounters, ProcDecoder, ProcItem};

pub use config::{ConfigError, SubscriberConfig};
pub use outputs::{Failure, Path, State, SubscriberEvent, Transmit};
pub use release::KernelRelease;

/// How long the probe waits for the ack of a filtered `LISTEN` at most (the kernel answers before the send
/// returns; a kernel without the filter, or a foreign namespace, never answers).
pub const PROBE_WAIT: Duration = Duration::from_millis(250);
/// The shortest time between two resyncs.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How often a `LISTEN` whose ack may have been lost to an overrun is sent again (only where that is harmless).
const MAX_RESENDS: u8 = 3;
/// The largest request: `nlmsghdr`, `cn_msg` and an 8-byte `proc_input`.
const REQUEST_MAX: usize = wire::NLMSG_HDRLEN + wire::CN_MSG_HDRLEN + 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probing { deadline: Instant, resends: u8 },
    Listening { deadline: Instant, resends: u8 },
    Subscribed,
    Failed(Failure),
    Closed,
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Filtered,
    Legacy,
    Resync,
}

/// A request whose ack has not come yet.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    /// The `ack` its answer carries (the request's `ack + 1`).
    ack: u32,
    purpose: Purpose,
    deadline: Instant,
}

/// The proc connector subscription engine.
#[derive(Debug)]
pub struct Subscriber {
    events: EventMask,
    ack_timeout: Duration,
    affinity: Option<CpuSet>,
    online: Option<CpuSet>,
    /// The kernel keeps per-socket request state: known from the release, or proven by an ack to the 8-byte form.
    per_socket_state: bool,
    started: Instant,
    phase: Phase,
    kernel_filtered: bool,
    decoder: ProcDecoder,
    /// Decodes what the probe receives; only its acks matter.
    probe: ProcDecoder,
    probe_items: Vec<ProcItem>,
    /// Items not yet handed out: `items[head..]`.
    items: Vec<ProcItem>,
    head: usize,
    status: VecDeque<SubscriberEvent>,
    transmits: VecDeque<Transmit>,
    next_seq: u32,
    next_ack: u32,
    outstanding: Vec<Outstanding>,
    filtered_listens: u32,
    legacy_listens: u32,
    resync_enabled: bool,
    resync_last: Option<Instant>,
    resync_due: Option<Instant>,
    /// The socket drop counter at the last reading (kernel-filtered), and whether an overrun awaits a reading.
    drops_seen: u32,
    drops_due: bool,
}

impl Subscriber {
    /// Starts subscribing: the first `LISTEN` is ready in [`Subscriber::poll_transmit`]. Open the probe first if
    /// [`Subscriber::probe_wanted`] says so.
    pub fn new(now: Instant, config: SubscriberConfig) -> Result<Subscriber, ConfigError> {
        let events = EventMask(config.events.0 & PROC_EVENT_ALL);
        if events.is_empty() {
            return Err(ConfigError::NoEvents);
        }
        let new_kernel = config.kernel.map(KernelRelease::has_proc_input);
        let mut s = Subscriber {
            events,
            ack_timeout: config.ack_timeout,
            affinity: config.affinity,
            online: config.online,
            per_socket_state: new_kernel == Some(true),
            started: now,
            phase: Phase::Closed,
            kernel_filtered: false,
            decoder: ProcDecoder::new(events, true),
            probe: ProcDecoder::new(EventMask::ALL, false),
            probe_items: Vec::new(),
            items: Vec::new(),
            head: 0,
            status: VecDeque::new(),
            transmits: VecDeque::new(),
            next_seq: 0,
            next_ack: config.initial_ack,
            outstanding: Vec::new(),
            filtered_listens: 0,
            legacy_listens: 0,
            resync_enabled: false,
            resync_last: None,
            resync_due: None,
            drops_seen: 0,
            drops_due: false,
        };
        if config.kernel_filter && events != EventMask::ALL && new_kernel != Some(false) {
            // Until an ack shows the filter is off, nothing can be counted from gaps.
            s.decoder.set_count_gaps(false);
            s.listen(now, Purpose::Filtered, None);
            s.phase = Phase::Probing { deadline: now + config.ack_timeout.min(PROBE_WAIT), resends: 0 };
        } else {
            s.listen(now, Purpose::Legacy, None);
            s.phase = Phase::Listening { deadline: now + config.ack_timeout, resends: 0 };
        }
        Ok(s)
    }

    /// Where the subscription stands.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Probing { .. } | Phase::Listening { .. } => State::Subscribing,
            Phase::Subscribed => State::Subscribed { kernel_filtered: self.kernel_filtered },
            Phase::Failed(f) => State::Failed(f),
            Phase::Closed => State::Closed,
        }
    }

    /// Whether the driver should have the probe socket open (and feed what it receives with [`Path::Probe`]).
    pub fn probe_wanted(&self) -> bool {
        matches!(self.phase, Phase::Probing { .. })
    }

    /// Whether the kernel filters for this subscription.
    pub fn kernel_filtered(&self) -> bool {
        self.kernel_filtered
    }

    /// The counters so far.
    pub fn counters(&self) -> ProcCounters {
        self.decoder.counters()
    }

    /// Updates what the driver knows about the CPUs (after a CPU was hot-plugged, or the thread moved).
    pub fn set_cpus(&mut self, affinity: Option<CpuSet>, online: Option<CpuSet>) {
        self.affinity = affinity;
        self.online = online;
    }

    /// Handles a datagram received on `path` from `from`.
    pub fn handle(&mut self, now: Instant, path: Path, from: NlAddr, datagram: &[u8]) {
        match path {
            Path::Main => {
                let start = self.items.len();
                self.decoder.handle(from, datagram, &mut self.items);
                for i in start..self.items.len() {
                    if let ProcItem::Ack { cpu, ack, err, .. } = self.items[i] {
                        self.on_ack(now, ack, cpu, err);
                    }
                }
            }
            Path::Probe => {
                self.probe_items.clear();
                self.probe.handle(from, datagram, &mut self.probe_items);
                for i in 0..self.probe_items.len() {
                    if let ProcItem::Ack { cpu, ack, err, .. } = self.probe_items[i] {
                        self.on_ack(now, ack, cpu, err);
                    }
                }
            }
        }
    }

    /// Handles a datagram the kernel cut to the receive buffer (`MSG_TRUNC`): counted, and what is whole in it is
    /// handled as [`Subscriber::handle`] does.
    pub fn handle_truncated(&mut self, now: Instant, path: Path, from: NlAddr, datagram: &[u8]) {
        self.decoder.counters_mut().truncated += 1;
        self.handle(now, path, from, datagram);
    }

    /// Handles an `ENOBUFS` from the socket on `path`: proc messages were dropped there.
    pub fn handle_overrun(&mut self, now: Instant, path: Path) {
        if path == Path::Probe {
            // The filtered ack may be among what the probe lost: ask again (a repeated filtered LISTEN counts once
            // on 6.6+, and older kernels ignore the 8-byte form).
            if let Phase::Probing { deadline, resends } = self.phase {
                if resends < MAX_RESENDS {
                    self.listen(now, Purpose::Filtered, None);
                    self.phase = Phase::Probing { deadline, resends: resends + 1 };
                }
            }
            return;
        }
        self.decoder.handle_overrun(&mut self.items);
        match self.phase {
            Phase::Probing { .. } => {
                // Whether the kernel filters is not known yet: prepare for both.
                self.drops_due = true;
                self.note_coverage();
            }
            Phase::Subscribed if self.kernel_filtered => self.drops_due = true,
            Phase::Listening { deadline, resends } => {
                self.note_coverage();
                // Only where a repeated LISTEN counts once.
                if self.per_socket_state && resends < MAX_RESENDS {
                    self.listen(now, Purpose::Legacy, None);
                    self.phase = Phase::Listening { deadline, resends: resends + 1 };
                }
            }
            Phase::Subscribed => {
                self.note_coverage();
                if self.resync_enabled {
                    let at = self.resync_last.map_or(now, |last| (last + RESYNC_INTERVAL).max(now));
                    self.resync_due = Some(self.resync_due.map_or(at, |due| due.min(at)));
                }
            }
            Phase::Failed(_) | Phase::Closed => {}
        }
    }

    /// Whether the driver should read the main socket's drop counter and pass it to
    /// [`Subscriber::handle_drop_count`]: a kernel-filtered subscription had an overrun. Read it once the socket
    /// is drained (empty), so that it includes what was dropped while the socket stayed congested.
    pub fn drop_count_wanted(&self) -> bool {
        self.drops_due && self.phase == Phase::Subscribed && self.kernel_filtered
    }

    /// Takes the main socket's drop counter (`SO_MEMINFO`), `None` when it cannot be read: what it grew by since the
    /// last reading is reported as an exact loss, and an overrun without a reading as a loss of unknown size.
    pub fn handle_drop_count(&mut self, _now: Instant, drops: Option<u32>) {
        let due = std::mem::take(&mut self.drops_due);
        match drops {
            Some(n) => {
                let grew = n.wrapping_sub(self.drops_seen);
                self.drops_seen = n;
                if grew > 0 {
                    self.decoder.handle_loss(Loss::Exact(u64::from(grew)), &mut self.items);
                }
            }
            None if due => self.decoder.handle_loss(Loss::Unknown, &mut self.items),
            None => {}
        }
    }

    /// Runs what is due at `now`: the probe's fallback to the legacy form, giving up on the ack, a deferred
    /// resync; forgets requests whose ack is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Probing { deadline, .. } if now >= deadline => {
                // The legacy form subscribes to everything: from here on every message can be counted.
                self.decoder.set_count_gaps(true);
                self.listen(now, Purpose::Legacy, None);
                self.phase = Phase::Listening { deadline: now + self.ack_timeout, resends: 0 };
            }
            Phase::Listening { deadline, .. } if now >= deadline => {
                self.fail(Failure::NoAck { waited: now.saturating_duration_since(self.started) });
            }
            Phase::Subscribed if self.resync_due.is_some_and(|due| now >= due) => self.resync(now, true),
            _ => {}
        }
        self.outstanding.retain(|o| o.deadline > now);
    }

    /// Ends the subscription: queues the `IGNORE`s that balance the `LISTEN`s the kernel may have counted (none if
    /// no `LISTEN` went out). Items already received can still be taken.
    pub fn close(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.outstanding.clear();
        self.resync_due = None;
        if self.per_socket_state {
            if self.filtered_listens + self.legacy_listens > 0 {
                self.request(Path::Main, None, ProcInput::Legacy(McastOp::Ignore));
            }
            return;
        }
        if self.filtered_listens > 0 {
            self.request(Path::Main, None, ProcInput::Filtered { op: McastOp::Ignore, events: self.events });
        }
        for _ in 0..self.legacy_listens {
            self.request(Path::Main, None, ProcInput::Legacy(McastOp::Ignore));
        }
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Subscriber::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Probing { deadline, .. } | Phase::Listening { deadline, .. } => Some(deadline),
            Phase::Subscribed => self.resync_due,
            Phase::Failed(_) | Phase::Closed => None,
        }
    }

    /// The next change of state, else the next item.
    pub fn poll_event(&mut self) -> Option<SubscriberEvent> {
        self.status.pop_front().or_else(|| self.poll_item().map(SubscriberEvent::Item))
    }

    /// The next item of the stream.
    pub fn poll_item(&mut self) -> Option<ProcItem> {
        let item = *self.items.get(self.head)?;
        self.head += 1;
        if self.head == self.items.len() {
            self.items.clear();
            self.head = 0;
        }
        Some(item)
    }

    /// Appends every waiting item to `out`; returns how many. Into an empty `out` this moves no item: the two
    /// vectors are swapped.
    pub fn drain_items(&mut self, out: &mut Vec<ProcItem>) -> usize {
        let n = self.items.len() - self.head;
        if out.is_empty() && self.head == 0 {
            std::mem::swap(out, &mut self.items);
        } else {
            out.extend_from_slice(&self.items[self.head..]);
            self.items.clear();
        }
        self.head = 0;
        n
    }

    /// Whether items are waiting.
    pub fn has_items(&self) -> bool {
        self.head < self.items.len()
    }

    fn on_ack(&mut self, now: Instant, ack: u32, cpu: u32, err: u32) {
        let Some(i) = self.outstanding.iter().position(|o| o.ack == ack) else { return };
        let request = self.outstanding.swap_remove(i);
        self.decoder.counters_mut().own_acks += 1;
        match (request.purpose, self.phase) {
            (Purpose::Filtered, Phase::Probing { .. }) => {
                // Only 6.6+ answers the 8-byte form, and it keeps per-socket state.
                self.per_socket_state = true;
                match err {
                    0 => self.subscribed(now, true, cpu),
                    e => self.fail(Failure::Refused(e)),
                }
            }
            (Purpose::Legacy, Phase::Listening { .. }) => match err {
                0 => self.subscribed(now, false, cpu),
                e => self.fail(Failure::Refused(e)),
            },
            _ => {}
        }
    }

    fn subscribed(&mut self, now: Instant, kernel_filtered: bool, ack_cpu: u32) {
        self.phase = Phase::Subscribed;
        self.kernel_filtered = kernel_filtered;
        self.decoder.set_count_gaps(!kernel_filtered);
        self.status.push_back(SubscriberEvent::Subscribed { kernel_filtered });
        self.resync_enabled =
            !kernel_filtered && self.per_socket_state && ack_cpu != u32::MAX && self.affinity.is_some();
        if self.resync_enabled {
            self.resync(now, false);
        }
    }

    fn fail(&mut self, failure: Failure) {
        self.phase = Phase::Failed(failure);
        self.status.push_back(SubscriberEvent::Failed(failure));
    }

    /// Gaps found after this overrun are exact only if every online CPU had a baseline when it happened.
    fn note_coverage(&mut self) {
        let covered = self.online.as_ref().is_some_and(|on| on.iter().all(|c| self.decoder.has_baseline(c)));
        self.decoder.set_gaps_exact(covered);
    }

    /// Sends `LISTEN` from the CPUs of the affinity set, back to back: after an overrun from all of them (what
    /// arrives after the overrun may have been queued before the drops, so it does not close a gap), else from
    /// those that have not been heard from.
    fn resync(&mut self, now: Instant, after_overrun: bool) {
        self.resync_due = None;
        self.resync_last = Some(now);
        let Some(affinity) = &self.affinity else { return };
        let cpus: Vec<u32> = affinity.iter().filter(|&c| after_overrun || !self.decoder.has_baseline(c)).collect();
        for cpu in cpus {
            self.listen(now, Purpose::Resync, Some(cpu));
        }
        self.decoder.counters_mut().resyncs += 1;
    }

    /// Queues a `LISTEN` and remembers its ack.
    fn listen(&mut self, now: Instant, purpose: Purpose, cpu: Option<u32>) {
        let request = match purpose {
            Purpose::Filtered => {
                self.filtered_listens += 1;
                ProcInput::Filtered { op: McastOp::Listen, events: self.events }
            }
            Purpose::Legacy | Purpose::Resync => {
                self.legacy_listens += 1;
                ProcInput::Legacy(McastOp::Listen)
            }
        };
        let ack = self.request(Path::Main, cpu, request);
        self.outstanding.push(Outstanding { ack: ack.wrapping_add(1), purpose, deadline: now + self.ack_timeout });
    }

    /// Queues a request; returns the `ack` it carries.
    fn request(&mut self, path: Path, cpu: Option<u32>, request: ProcInput) -> u32 {
        let (seq, ack) = (self.next_seq, self.next_ack);
        self.next_seq = seq.wrapping_add(1);
        self.next_ack = ack.wrapping_add(1);
        let (data, n) = request.to_bytes();
        let mut buf = [0u8; REQUEST_MAX];
        let hdr = CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() };
        // A request of at most 8 bytes always fits its 44-byte buffer.
        let len = wire::emit_datagram(&mut buf, hdr, &data[..n], 0).unwrap_or(0) as u8;
        self.transmits.push_back(Transmit { path, cpu, request, buf, len });
        self.decoder.counters_mut().requests += 1;
        ack
    }
}
