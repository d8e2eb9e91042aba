//! The receive pipeline: a receive thread that drains an [`EventSource`] (the proc connector, or a recording)
//! into batches, reads at once from `/proc` what each exec needs ([`prefetch`]), and hands the batches to the
//! consumer through a bounded queue.
//!
//! ```text
//!  EventSource ──recv──> receive thread ──batches──> Queue (bounded, in events) ──> consumer: table, filters
//!                        │ exec: /proc/PID read now            │ full: the batch's events are dropped,
//!                        │ (bounded by a time budget,          │ counted, and reported as a loss of
//!                        │  a lag limit and a memory limit)    │ their own cause (queue_overflow)
//!                        └─ recorder: datagrams, losses (bounded channel, misses counted)
//! ```
//!
//! The receive thread never waits for the consumer: when the queue is full, it drops the events of the batch
//! at hand (keeping its loss reports) and goes on receiving. While events come slowly it wakes for each
//! datagram, so an exec is read from `/proc` while the program still runs, and hands batches on every
//! `latency`; in a storm (a drain that brings many events) it sleeps `latency` between drains, so that each
//! wake-up drains many events with few system calls.

pub mod prefetch;
pub(crate) mod queue;
pub(crate) mod receive;
pub mod source;

use cnlink::proc::ProcItem;

use crate::procfs::{Observation, Wants};

pub use prefetch::{PrefetchCounters, PrefetchPolicy};
pub use source::{EventSource, Incoming, LiveSource, Received, SourceCounters};

/// An observation the receive thread read the moment its event was decoded.
#[derive(Debug, Clone)]
pub(crate) struct Prefetch {
    /// What was read.
    pub(crate) observation: Observation,
    /// With what.
    pub(crate) wants: Wants,
}

/// What the receive thread hands on: items in arrival order, the losses between them, and the observations
/// read at once.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Items and losses, as the source gave them (losses of `ProcItem::Lost` items converted).
    pub(crate) input: Incoming,
    /// Observations by item index, in index order.
    pub(crate) prefetched: Vec<(usize, Prefetch)>,
    /// Approximate bytes of `prefetched`.
    pub(crate) observation_bytes: usize,
    /// `CLOCK_MONOTONIC` ns of the last receive into the batch: the time of the losses it revealed.
    pub(crate) at_ns: u64,
    /// Datagrams a recorder's tap had shown when the batch was handed on (0 without a recorder): once the batch
    /// is handled, every one of them has been.
    pub(crate) datagrams: u64,
}

impl Batch {
    /// Events in the batch (what the queue's bound counts).
    pub(crate) fn events(&self) -> usize {
        self.input.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.input.items.is_empty() && self.input.losses.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.input.items.clear();
        self.input.losses.clear();
        self.prefetched.clear();
        self.observation_bytes = 0;
    }

    /// Drops the events (and what was read for them), keeping the losses and the other items; returns how
    /// many events were dropped.
    pub(crate) fn drop_events(&mut self) -> u64 {
        let before = self.input.items.len();
        self.input.items.retain(|i| !matches!(i, ProcItem::Event(_)));
        for l in &mut self.input.losses {
            l.0 = 0;
        }
        self.prefetched.clear();
        self.observation_bytes = 0;
        (before - self.input.items.len()) as u64
    }
}

/// What the consumer receives.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A batch.
    Batch(Batch),
    /// Receiving failed; the receive thread has stopped.
    Failed(cnlink::Error),
    /// The source is exhausted or the monitor was stopped: nothing follows.
    End,
}
