//! Where the receive thread's items come from: the [`EventSource`] trait, the live proc connector
//! ([`LiveSource`]), and recorded datagrams ([`crate::replay::ReplayEvents`]).

use std::time::Duration;

use cnlink::proc::{ProcEvents, ProcItem};

use crate::loss::LostEvents;

/// What a source appends to on each receive.
#[derive(Debug, Default)]
pub struct Incoming {
    /// Items in arrival order.
    pub items: Vec<ProcItem>,
    /// Losses, each before the item at its index (an index equal to the length of `items` at the time: after
    /// everything so far). `ProcItem::Lost` items in `items` are converted into losses by the receive thread;
    /// a source may also add losses here directly (a recording's queue losses and socket drops).
    pub losses: Vec<(usize, LostEvents)>,
}

/// The outcome of one receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Whatever was ready was appended (possibly nothing, when the timeout passed). `at_ns` is the
    /// `CLOCK_MONOTONIC` time of the receive (for a recording, the recorded time).
    Ready {
        /// When.
        at_ns: u64,
    },
    /// Nothing more will come (the end of a recording).
    End,
}

/// Counters of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceCounters {
    /// Datagrams received.
    pub datagrams: u64,
    /// Datagrams or messages that did not decode.
    pub malformed: u64,
    /// Datagrams dropped because they did not come from the kernel.
    pub rejected: u64,
    /// Events the userspace filter dropped (kinds not subscribed to, on a kernel without the filter).
    pub filtered: u64,
}

/// A source of proc connector items for the receive thread.
pub trait EventSource: Send {
    /// Receives what is ready into `into`, waiting at most `timeout` for the first item (`None`: until one
    /// comes).
    fn recv(&mut self, into: &mut Incoming, timeout: Option<Duration>) -> Result<Received, cnlink::Error>;

    /// Whether losses are counted from the socket's drop counter (a kernel-filtered subscription) rather than
    /// from sequence gaps: it decides the cause of `ProcItem::Lost` items.
    fn kernel_filtered(&self) -> bool;

    /// Counters so far.
    fn counters(&self) -> SourceCounters;

    /// The socket's receive buffer as the kernel granted it, if there is a socket.
    fn recv_buffer(&self) -> Option<usize> {
        None
    }
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of the kernel's event timestamps.
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// The live proc connector.
#[derive(Debug)]
pub struct LiveSource {
    events: ProcEvents,
}

impl LiveSource {
    /// Receives from `events`.
    pub fn new(events: ProcEvents) -> LiveSource {
        LiveSource { events }
    }

    /// The subscription.
    pub fn events(&self) -> &ProcEvents {
        &self.events
    }
}

impl EventSource for LiveSource {
    fn recv(&mut self, into: &mut Incoming, timeout: Option<Duration>) -> Result<Received, cnlink::Error> {
        self.events.recv_items(&mut into.items, timeout)?;
        Ok(Received::Ready { at_ns: monotonic_ns() })
    }

    fn kernel_filtered(&self) -> bool {
        self.events.kernel_filtered()
    }

    fn counters(&self) -> SourceCounters {
        let s = self.events.stats();
        SourceCounters { datagrams: s.datagrams, malformed: s.malformed, rejected: s.rejected, filtered: s.filtered }
    }

    fn recv_buffer(&self) -> Option<usize> {
        self.events.socket().recv_buffer().ok()
    }
}
