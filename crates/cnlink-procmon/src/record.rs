//! The recorder hook: everything a recording needs to replay a monitor's output exactly, delivered off the
//! receive thread through a bounded channel whose misses are counted.
//!
//! A recorder ([`recorder`]) gets, in order per producer:
//!
//! - from the receive thread: every datagram as received, before decoding, with its `CLOCK_MONOTONIC` receive
//!   time ([`RecorderEvent::Datagram`], from `cnlink::proc`'s tap), every overrun, and every loss the monitor
//!   reports ([`RecorderEvent::Lost`]), after the datagrams received with it;
//! - from the consumer: every answer `/proc` gave the process table and the filters, in the order they were
//!   used ([`RecorderEvent::Answer`]): the start-up snapshot first, then each observation (the exec
//!   observations read by the receive thread included, when the table used them), existence check and
//!   process group.
//!
//! The two producers' events interleave in the channel; replay reads them as two sequences (see
//! [`crate::replay`]). When the channel is full an event is dropped, counted in [`Recorder::missed`], and a
//! [`RecorderEvent::Missed`] marker with the count goes in front of that producer's next event that fits: a
//! recording says where it has holes. Nothing waits: a slow recorder costs the recording, never the monitor.
//!
//! Each [`ProcAnswer`] is stored as bytes with an encoding number ([`ProcAnswer::ENCODING`]), for the capture
//! format's opaque snapshot and exec-observation records.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::loss::LostEvents;
use crate::procfs::{Observation, ProcSource, Snapshot, Wants};

/// What a recorder sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecorderEvent {
    /// A datagram as received on the subscribed socket, before decoding.
    Datagram {
        /// `CLOCK_MONOTONIC` ns when it was received.
        timestamp_ns: u64,
        /// The sender's port id (0: the kernel; the decoder drops others).
        from_port: u32,
        /// The bytes (as many as the receive slot held).
        bytes: Vec<u8>,
    },
    /// The socket reported an overrun (`ENOBUFS`).
    Overrun {
        /// `CLOCK_MONOTONIC` ns when it was reported.
        timestamp_ns: u64,
    },
    /// A loss the monitor reported.
    Lost {
        /// The loss.
        loss: LostEvents,
        /// For a sequence gap: the CPU and `seq` of the message that revealed it (the loss comes right before
        /// that message's item).
        before: Option<(u32, u32)>,
    },
    /// An answer `/proc` gave the table or a filter.
    Answer(ProcAnswer),
    /// This many events of the same producer did not fit in the channel before the next one.
    Missed {
        /// How many.
        count: u64,
    },
    /// The process table as the recorder asked for it ([`Recorder::request_state`]), taken between two
    /// batches: the first `datagrams` datagrams the tap showed (counted from the start, sent or missed) had been
    /// handled, no later one had. A recording starts its next file with it.
    State {
        /// The table as a snapshot ([`crate::ProcessTable::as_snapshot`]): a [`ProcAnswer::Snapshot`], so that a
        /// replay seeds its table with it as with the start-up snapshot.
        answer: ProcAnswer,
        /// Datagrams shown before the state.
        datagrams: u64,
    },
}

/// One answer of a [`ProcSource`], as the table or a filter used it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcAnswer {
    /// The start-up snapshot the table was seeded with.
    Snapshot {
        /// What it was read with.
        wants: Wants,
        /// The processes.
        snapshot: Snapshot,
    },
    /// One observation.
    Observe {
        /// The pid asked for.
        pid: i32,
        /// What was asked for.
        wants: Wants,
        /// The answer.
        observation: Box<Observation>,
    },
    /// Whether `/proc/PID` existed.
    Exists {
        /// The pid asked for.
        pid: i32,
        /// The answer.
        exists: bool,
    },
    /// The process group of a process.
    Pgid {
        /// The pid asked for.
        pid: i32,
        /// The answer.
        pgid: Option<i32>,
    },
}

/// Bytes that are not a [`ProcAnswer`] of a known encoding.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// An encoding this version does not know.
    #[error("unknown /proc answer encoding {0}")]
    Encoding(u32),
    /// The bytes do not decode.
    #[error("bad /proc answer: {0}")]
    Bad(#[from] serde_json::Error),
}

impl ProcAnswer {
    /// The encoding [`ProcAnswer::encode`] writes: JSON of this type (serde's external enum tagging, field
    /// names as in the Rust types, byte strings as arrays of numbers).
    pub const ENCODING: u32 = 1;

    /// The answer as bytes of [`ProcAnswer::ENCODING`].
    pub fn encode(&self) -> Vec<u8> {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// An answer from bytes of `encoding`.
    pub fn decode(encoding: u32, bytes: &[u8]) -> Result<ProcAnswer, AnswerError> {
        match encoding {
            ProcAnswer::ENCODING => Ok(serde_json::from_slice(bytes)?),
            other => Err(AnswerError::Encoding(other)),
        }
    }

    /// The pid the answer is about (0 for a snapshot).
    pub fn pid(&self) -> i32 {
        match self {
            ProcAnswer::Snapshot { .. } => 0,
            ProcAnswer::Observe { pid, .. } | ProcAnswer::Exists { pid, .. } | ProcAnswer::Pgid { pid, .. } => *pid,
        }
    }
}

/// A tap for `cnlink::proc` that shows a recorder every datagram received on the subscribed socket, and counts
/// them.
pub(crate) fn datagram_tap(mut tx: RecorderTx) -> cnlink::proc::Tap {
    Box::new(move |ev| {
        if let cnlink::proc::TapEvent::Received { path: cnlink::proc::Path::Main, meta, datagram } = ev {
            let timestamp_ns = crate::pipeline::source::monotonic_ns();
            tx.state.datagrams.fetch_add(1, Ordering::Relaxed);
            tx.send(RecorderEvent::Datagram { timestamp_ns, from_port: meta.from.port, bytes: datagram.to_vec() });
        }
    })
}

/// What the producers and the recorder share besides the channel.
#[derive(Debug)]
struct StateShare {
    /// The recorder wants the table's state once this many datagrams were handled ([`NOT_WANTED`]: it does not).
    wanted: AtomicU64,
    /// Datagrams the tap has shown (sent or missed).
    datagrams: AtomicU64,
}

/// [`StateShare::wanted`] when no state is wanted.
const NOT_WANTED: u64 = u64::MAX;

/// A producer's end of the recorder channel.
#[derive(Debug)]
pub(crate) struct RecorderTx {
    tx: SyncSender<RecorderEvent>,
    missed: Arc<AtomicU64>,
    state: Arc<StateShare>,
    /// Misses of this producer not yet marked in the channel.
    pending: u64,
}

impl Clone for RecorderTx {
    fn clone(&self) -> Self {
        RecorderTx { tx: self.tx.clone(), missed: self.missed.clone(), state: self.state.clone(), pending: 0 }
    }
}

impl RecorderTx {
    /// Datagrams the tap has shown so far.
    pub(crate) fn datagrams(&self) -> u64 {
        self.state.datagrams.load(Ordering::Relaxed)
    }

    /// Whether the recorder wants the table's state now that `handled` datagrams were handled (once per
    /// asking).
    pub(crate) fn state_wanted(&self, handled: u64) -> bool {
        let after = self.state.wanted.load(Ordering::Relaxed);
        after != NOT_WANTED
            && handled >= after
            && self.state.wanted.compare_exchange(after, NOT_WANTED, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Sends without waiting; a full or closed channel counts a miss.
    pub(crate) fn send(&mut self, ev: RecorderEvent) {
        if self.pending > 0 {
            match self.tx.try_send(RecorderEvent::Missed { count: self.pending }) {
                Ok(()) => self.pending = 0,
                Err(_) => {
                    self.miss();
                    return;
                }
            }
        }
        if self.tx.try_send(ev).is_err() {
            self.miss();
        }
    }

    /// The shared count of misses.
    pub(crate) fn missed_counter(&self) -> Arc<AtomicU64> {
        self.missed.clone()
    }

    fn miss(&mut self) {
        self.pending += 1;
        self.missed.fetch_add(1, Ordering::Relaxed);
    }
}

/// The recorder's end: what the monitor shows it, to be written out on a thread of its own.
#[derive(Debug)]
pub struct Recorder {
    rx: Receiver<RecorderEvent>,
    missed: Arc<AtomicU64>,
    state: Arc<StateShare>,
    /// A receive found the channel empty and the monitor gone.
    closed: AtomicBool,
}

impl Recorder {
    /// The next event, waiting at most `timeout`; `None` when the timeout passed or the monitor is gone and
    /// everything was taken (then [`Recorder::is_closed`] says so).
    pub fn recv(&self, timeout: Duration) -> Option<RecorderEvent> {
        self.recv_timeout(timeout).ok()
    }

    /// The next event, waiting at most `timeout`; the error says whether the time passed or the monitor is
    /// gone and everything was taken.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<RecorderEvent, RecvTimeoutError> {
        let r = self.rx.recv_timeout(timeout);
        if let Err(RecvTimeoutError::Disconnected) = r {
            self.closed.store(true, Ordering::Relaxed);
        }
        r
    }

    /// The next event if one is there.
    pub fn try_recv(&self) -> Option<RecorderEvent> {
        match self.rx.try_recv() {
            Ok(ev) => Some(ev),
            Err(TryRecvError::Disconnected) => {
                self.closed.store(true, Ordering::Relaxed);
                None
            }
            Err(TryRecvError::Empty) => None,
        }
    }

    /// Whether a receive has found the channel empty and the monitor gone: no event can come any more. It never
    /// takes an event itself.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Asks the monitor for its table's state once it has handled at least the first `after` datagrams the tap
    /// showed (what the recording holds so far): it sends a [`RecorderEvent::State`] between two batches, before
    /// it handles the next one or when its consumer next asks for items.
    pub fn request_state(&self, after: u64) {
        self.state.wanted.store(after, Ordering::Relaxed);
    }

    /// Events that did not fit in the channel.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Iterator for Recorder {
    type Item = RecorderEvent;

    /// Blocks until the next event; `None` once the monitor is gone and everything was taken.
    fn next(&mut self) -> Option<RecorderEvent> {
        let ev = self.rx.recv().ok();
        if ev.is_none() {
            self.closed.store(true, Ordering::Relaxed);
        }
        ev
    }
}

/// A recorder channel of `capacity` events; give the sender to [`crate::MonitorBuilder::recorder`].
pub fn recorder(capacity: usize) -> (RecorderHandle, Recorder) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let missed = Arc::new(AtomicU64::new(0));
    let state = Arc::new(StateShare { wanted: AtomicU64::new(NOT_WANTED), datagrams: AtomicU64::new(0) });
    (
        RecorderHandle(RecorderTx { tx, missed: missed.clone(), state: state.clone(), pending: 0 }),
        Recorder { rx, missed, state, closed: AtomicBool::new(false) },
    )
}

/// The monitor's end of a recorder channel (see [`recorder`]).
#[derive(Debug)]
pub struct RecorderHandle(pub(crate) RecorderTx);

/// A source that shows every answer of `inner` to a recorder.
pub(crate) struct Recording<'a> {
    pub(crate) inner: &'a mut dyn ProcSource,
    pub(crate) tx: &'a mut RecorderTx,
}

impl ProcSource for Recording<'_> {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        let observation = self.inner.observe(pid, wants);
        let answer = ProcAnswer::Observe { pid, wants, observation: Box::new(observation.clone()) };
        self.tx.send(RecorderEvent::Answer(answer));
        observation
    }

    fn exists(&mut self, pid: i32) -> bool {
        let exists = self.inner.exists(pid);
        self.tx.send(RecorderEvent::Answer(ProcAnswer::Exists { pid, exists }));
        exists
    }

    fn snapshot(&mut self, wants: Wants) -> Snapshot {
        let snapshot = self.inner.snapshot(wants);
        self.tx.send(RecorderEvent::Answer(ProcAnswer::Snapshot { wants, snapshot: snapshot.clone() }));
        snapshot
    }

    fn pgid(&mut self, pid: i32) -> Option<i32> {
        let pgid = self.inner.pgid(pid);
        self.tx.send(RecorderEvent::Answer(ProcAnswer::Pgid { pid, pgid }));
        pgid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_their_encoding() {
        let a = ProcAnswer::Observe { pid: 7, wants: Wants::ALL, observation: Box::new(Observation::gone(7, 3)) };
        let back = ProcAnswer::decode(ProcAnswer::ENCODING, &a.encode()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.pid(), 7);
        assert!(matches!(ProcAnswer::decode(99, b"{}"), Err(AnswerError::Encoding(99))));
        assert!(ProcAnswer::decode(ProcAnswer::ENCODING, b"{").is_err());
    }

    #[test]
    fn a_full_channel_counts_misses_and_marks_the_hole() {
        let (RecorderHandle(mut tx), rec) = recorder(2);
        for i in 0..5 {
            tx.send(RecorderEvent::Overrun { timestamp_ns: i });
        }
        assert_eq!(rec.missed(), 3);
        assert_eq!(rec.try_recv(), Some(RecorderEvent::Overrun { timestamp_ns: 0 }));
        assert_eq!(rec.try_recv(), Some(RecorderEvent::Overrun { timestamp_ns: 1 }));
        tx.send(RecorderEvent::Overrun { timestamp_ns: 9 });
        assert_eq!(rec.try_recv(), Some(RecorderEvent::Missed { count: 3 }));
        drop(tx);
        // Asking whether it is closed takes nothing: the last event is still there.
        assert!(!rec.is_closed());
        assert_eq!(rec.recv_timeout(Duration::ZERO), Ok(RecorderEvent::Overrun { timestamp_ns: 9 }));
        assert!(!rec.is_closed());
        assert_eq!(rec.recv_timeout(Duration::ZERO), Err(RecvTimeoutError::Disconnected));
        assert!(rec.is_closed());
    }
}
