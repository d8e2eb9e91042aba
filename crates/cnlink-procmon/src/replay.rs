//! Running a monitor from a recording instead of the kernel and `/proc`: [`ReplayEvents`] (an
//! [`EventSource`] over recorded datagrams and losses) and [`RecordedProc`] (a [`ProcSource`] over recorded
//! answers). Given to [`crate::MonitorBuilder::source`] and [`crate::MonitorBuilder::proc_source`], with the
//! recorded host identity, own pid and selection, the monitor yields what the live one yielded.
//!
//! A recording (see [`crate::record`]) holds two sequences, interleaved: what the receive thread saw
//! (datagrams, overruns, losses) and what the consumer used (answers). Replay reads them apart, each at its
//! own pace: a file can simply be read twice, once for each.
//!
//! - Datagrams go through the same decoder as live ([`cnlink::engine::ProcDecoder`], with the events
//!   subscribed to), which counts no gaps of its own: every loss comes from the recording, placed where it was
//!   live (a sequence gap before the message that revealed it, a drop-counter loss after the datagrams it came
//!   with). A queue loss removes the events the live monitor dropped: the last `count` events decoded before
//!   it (the live receive thread dropped a whole batch, whose datagrams the recording holds).
//! - Answers are handed out in the order they were used: each question takes the first answer that fits it (the
//!   same kind and pid, and what was read) among the next [`WINDOW`]. Where the replay diverges from the live
//!   run (a table that starts from a rotated file's snapshot knows less than the live one did, and asks other
//!   questions), a question without a fitting answer gets "gone", and an answer passed over by [`PASSES`]
//!   later ones is dropped; both are counted ([`RecordedProc::mismatches`]). A replay that asks what the live
//!   run asked takes every answer in order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cnlink::engine::ProcDecoder;
use cnlink::proc::ProcItem;
use cnlink::wire::{EventMask, NlAddr};

use crate::loss::{LossCause, LostEvents};
use crate::pipeline::{EventSource, Incoming, Received, SourceCounters};
use crate::procfs::{Observation, ProcSource, Snapshot, Wants};
use crate::record::{ProcAnswer, RecorderEvent};

/// What the receive side of a recording holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayInput {
    /// A datagram as received.
    Datagram {
        /// `CLOCK_MONOTONIC` ns when it was received.
        timestamp_ns: u64,
        /// The sender's port id.
        from_port: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// An overrun.
    Overrun {
        /// When.
        timestamp_ns: u64,
    },
    /// A loss the live monitor reported.
    Lost {
        /// The loss.
        loss: LostEvents,
        /// For a sequence gap, the message (CPU, `seq`) it came before.
        before: Option<(u32, u32)>,
    },
}

impl ReplayInput {
    /// The receive-side input a recorder event is, if it is one.
    pub fn from_recorded(ev: &RecorderEvent) -> Option<ReplayInput> {
        match ev {
            RecorderEvent::Datagram { timestamp_ns, from_port, bytes } => {
                Some(ReplayInput::Datagram { timestamp_ns: *timestamp_ns, from_port: *from_port, bytes: bytes.clone() })
            }
            RecorderEvent::Overrun { timestamp_ns } => Some(ReplayInput::Overrun { timestamp_ns: *timestamp_ns }),
            RecorderEvent::Lost { loss, before } => Some(ReplayInput::Lost { loss: *loss, before: *before }),
            _ => None,
        }
    }
}

/// The most datagrams handed on per receive.
const CHUNK: usize = 4096;

/// Recorded datagrams and losses as an [`EventSource`].
pub struct ReplayEvents {
    inputs: Box<dyn Iterator<Item = ReplayInput> + Send>,
    decoder: ProcDecoder,
    kernel_filtered: bool,
    ended: bool,
}

impl std::fmt::Debug for ReplayEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayEvents").field("kernel_filtered", &self.kernel_filtered).finish_non_exhaustive()
    }
}

impl ReplayEvents {
    /// Replays `inputs`, decoding the events of `events` (what the live monitor subscribed to:
    /// [`crate::Monitor::kernel_mask`]); `kernel_filtered` as the live subscription was.
    pub fn new(
        inputs: impl IntoIterator<Item = ReplayInput, IntoIter: Send + 'static>,
        events: EventMask,
        kernel_filtered: bool,
    ) -> ReplayEvents {
        ReplayEvents {
            inputs: Box::new(inputs.into_iter()),
            decoder: ProcDecoder::new(events, false),
            kernel_filtered,
            ended: false,
        }
    }
}

/// Removes the last `n` events of `items[from..]`, moving the losses placed after them; returns where the
/// removed events began.
fn remove_last_events(into: &mut Incoming, from: usize, n: u64) -> usize {
    let mut left = n;
    let mut keep = vec![true; into.items.len()];
    for i in (from..into.items.len()).rev() {
        if left == 0 {
            break;
        }
        if matches!(into.items[i], ProcItem::Event(_)) {
            keep[i] = false;
            left -= 1;
        }
    }
    // New index of each old index.
    let mut moved = Vec::with_capacity(keep.len() + 1);
    let mut at = 0;
    for &k in &keep {
        moved.push(at);
        at += usize::from(k);
    }
    moved.push(at);
    for l in &mut into.losses {
        l.0 = moved[l.0.min(keep.len())];
    }
    let mut i = 0;
    into.items.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    into.items.len()
}

impl EventSource for ReplayEvents {
    fn recv(&mut self, into: &mut Incoming, _timeout: Option<Duration>) -> Result<Received, cnlink::Error> {
        if self.ended {
            return Ok(Received::End);
        }
        let from = into.items.len();
        let mut at_ns = 0;
        let mut datagrams = 0;
        while datagrams < CHUNK {
            let Some(input) = self.inputs.next() else {
                self.ended = true;
                break;
            };
            match input {
                ReplayInput::Datagram { timestamp_ns, from_port, bytes } => {
                    self.decoder.handle(NlAddr::port(from_port), &bytes, &mut into.items);
                    at_ns = timestamp_ns;
                    datagrams += 1;
                }
                ReplayInput::Overrun { timestamp_ns } => {
                    self.decoder.handle_overrun(&mut into.items);
                    at_ns = timestamp_ns;
                }
                ReplayInput::Lost { loss, before } => {
                    let at = match (loss.cause, before) {
                        (LossCause::Queue, _) => remove_last_events(into, from, loss.count.unwrap_or(0)),
                        (_, Some((cpu, seq))) => into.items[from..]
                            .iter()
                            .position(|i| match i {
                                ProcItem::Event(e) => (e.cpu, e.seq) == (cpu, seq),
                                ProcItem::Ack { cpu: c, seq: s, .. } => (*c, *s) == (cpu, seq),
                                _ => false,
                            })
                            .map_or(into.items.len(), |p| from + p),
                        _ => into.items.len(),
                    };
                    into.losses.push((at, loss));
                    at_ns = loss.timestamp_ns;
                }
            }
        }
        if self.ended && into.items.len() == from && into.losses.is_empty() {
            return Ok(Received::End);
        }
        Ok(Received::Ready { at_ns })
    }

    fn kernel_filtered(&self) -> bool {
        self.kernel_filtered
    }

    fn counters(&self) -> SourceCounters {
        let s = self.decoder.counters();
        SourceCounters { datagrams: s.datagrams, malformed: s.malformed, rejected: s.rejected, filtered: s.filtered }
    }
}

/// How many recorded answers a question looks at.
pub const WINDOW: usize = 64;
/// How many later answers may be taken before an answer no question took is dropped.
pub const PASSES: u32 = 16;

/// Recorded answers as a [`ProcSource`], in the order they were used.
pub struct RecordedProc {
    answers: Box<dyn Iterator<Item = ProcAnswer> + Send>,
    /// The next answers, each with how many later ones were taken before it.
    window: VecDeque<(ProcAnswer, u32)>,
    mismatches: Arc<AtomicU64>,
}

impl std::fmt::Debug for RecordedProc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedProc").field("mismatches", &self.mismatches).finish_non_exhaustive()
    }
}

impl RecordedProc {
    /// Answers from `answers`, in order.
    pub fn new(answers: impl IntoIterator<Item = ProcAnswer, IntoIter: Send + 'static>) -> RecordedProc {
        RecordedProc {
            answers: Box::new(answers.into_iter()),
            window: VecDeque::with_capacity(WINDOW),
            mismatches: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count of questions the recording had no fitting answer for, and of answers no question took (shared:
    /// it can be read while the monitor owns the source).
    pub fn mismatches(&self) -> Arc<AtomicU64> {
        self.mismatches.clone()
    }

    /// The first of the next [`WINDOW`] answers that `fits`; the answers before it stay for later questions
    /// until [`PASSES`] later ones were taken. Without one, a mismatch is counted.
    fn take(&mut self, fits: impl FnMut(&ProcAnswer) -> bool) -> Option<ProcAnswer> {
        while self.window.len() < WINDOW {
            match self.answers.next() {
                Some(a) => self.window.push_back((a, 0)),
                None => break,
            }
        }
        let Some(i) = self.window.iter().map(|(a, _)| a).position(fits) else {
            self.mismatches.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        for (_, passed) in self.window.iter_mut().take(i) {
            *passed += 1;
        }
        let answer = self.window.remove(i).map(|(a, _)| a);
        while self.window.front().is_some_and(|(_, passed)| *passed >= PASSES) {
            self.window.pop_front();
            self.mismatches.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }
}

impl ProcSource for RecordedProc {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        match self.take(|a| matches!(a, ProcAnswer::Observe { pid: p, wants: w, .. } if *p == pid && *w == wants)) {
            Some(ProcAnswer::Observe { observation, .. }) => *observation,
            _ => Observation::gone(pid, 0),
        }
    }

    fn exists(&mut self, pid: i32) -> bool {
        match self.take(|a| matches!(a, ProcAnswer::Exists { pid: p, .. } if *p == pid)) {
            Some(ProcAnswer::Exists { exists, .. }) => exists,
            _ => true,
        }
    }

    fn snapshot(&mut self, _: Wants) -> Snapshot {
        match self.take(|a| matches!(a, ProcAnswer::Snapshot { .. })) {
            Some(ProcAnswer::Snapshot { snapshot, .. }) => snapshot,
            _ => Snapshot { ticks_per_second: 100, processes: Vec::new() },
        }
    }

    fn pgid(&mut self, pid: i32) -> Option<i32> {
        match self.take(|a| matches!(a, ProcAnswer::Pgid { pid: p, .. } if *p == pid)) {
            Some(ProcAnswer::Pgid { pgid, .. }) => pgid,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(pid: i32) -> ProcAnswer {
        ProcAnswer::Exists { pid, exists: pid % 2 == 0 }
    }

    #[test]
    fn answers_are_taken_in_order_and_a_divergence_costs_only_itself() {
        // In order: every answer taken, nothing counted.
        let mut p = RecordedProc::new((1..=4).map(exists));
        assert_eq!((1..=4).map(|pid| p.exists(pid)).collect::<Vec<_>>(), [false, true, false, true]);
        assert_eq!(p.mismatches().load(Ordering::Relaxed), 0);
        // A question the live run did not ask gets the default, and takes nothing.
        let mut p = RecordedProc::new([exists(2), exists(4)]);
        assert!(p.exists(9), "no answer: it exists");
        assert!(p.exists(2) && p.exists(4));
        assert_eq!(p.mismatches().load(Ordering::Relaxed), 1);
        // A question the replay does not ask leaves an answer behind, which is dropped once enough later ones
        // were taken; the questions after it get theirs.
        let mut p = RecordedProc::new([exists(1)].into_iter().chain((2..40).map(|n| exists(2 * n))));
        for n in 2..40 {
            assert!(p.exists(2 * n), "{n}");
        }
        assert_eq!(p.mismatches().load(Ordering::Relaxed), 1, "the answer no question took");
        assert_eq!(p.window.len(), 0);
    }
}
