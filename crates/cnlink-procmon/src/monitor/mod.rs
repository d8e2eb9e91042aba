//! [`Monitor`]: process events with everything the process table knows, and every loss, from a receive thread
//! that is never slowed by enrichment, output or a slow consumer.
//!
//! [`Monitor::builder`] subscribes to the proc connector (asking the kernel for the events shown and those
//! the table needs), seeds the [`ProcessTable`] from a `/proc` snapshot taken after subscribing, and starts the
//! receive thread ([`crate::pipeline`]). The consumer (the thread that calls [`Monitor::recv`], iterates, or
//! polls the `Stream` of the `tokio` feature) runs each batch through the table, the [`crate::Selection`] and the
//! filters, and gets [`MonitorItem`]s: a [`ProcRecord`] per event shown, and a [`LostEvents`] per loss, in
//! order. The table's `/proc` reads happen on the consumer's thread (a few system calls per fork or exec;
//! execs are mostly read already by the receive thread).
//!
//! Nothing is lost silently: the kernel's losses (sequence gaps, or the socket's drop counter) and the
//! monitor's own (its queue was full) are items, and counted by cause and CPU ([`MonitorCounters::losses`]).

mod builder;
mod core;
#[cfg(feature = "tokio")]
mod stream;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnlink::wire::EventMask;

use crate::loss::{LossCounts, LostEvents};
use crate::pipeline::prefetch::{PrefetchCounters, PrefetchStats};
use crate::pipeline::queue::Queue;
use crate::pipeline::receive::SourceStats;
use crate::pipeline::{Msg, SourceCounters};
use crate::procfs::ProcSource;
use crate::record::RecorderTx;
use crate::select::EventKind;
use crate::table::record::ProcRecord;
use crate::table::{ProcessTable, TableStats};

pub use builder::{MonitorBuilder, TRACKING};

#[cfg(test)]
mod tests;

/// What a monitor yields, in order.
#[derive(Debug, Clone)]
pub enum MonitorItem {
    /// An event that passed the selection and the filters, with what the table knows.
    Record(ProcRecord),
    /// Events were lost here.
    Lost(LostEvents),
}

/// Why a monitor could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The subscription failed.
    #[error("cannot subscribe to process events")]
    Subscribe(#[source] cnlink::Error),
    /// Receiving failed; the monitor has stopped.
    #[error("receiving process events failed")]
    Receive(#[source] cnlink::Error),
    /// The host identity (machine id, boot id) could not be read.
    #[error("reading the host identity")]
    Host(#[source] crate::identity::IdentityError),
    /// The receive thread could not be started.
    #[error("starting the receive thread")]
    Thread(#[source] std::io::Error),
    /// A filter could not start ([`crate::RecordFilter::start`]).
    #[error("starting a filter")]
    Filter(#[source] crate::filter::StartError),
}

/// Counters of a monitor, at one moment.
#[derive(Debug, Clone, Default)]
pub struct MonitorCounters {
    /// Events received (not the monitor's own), by kind ([`EventKind::index`]).
    pub received: [u64; EventKind::COUNT],
    /// Events shown (passed the selection and the filters), by kind.
    pub shown: [u64; EventKind::COUNT],
    /// Events of the monitor's own process (its threads), not handled.
    pub own: u64,
    /// Subscription acks seen.
    pub acks: u64,
    /// Receive-buffer overruns (`ENOBUFS`).
    pub overruns: u64,
    /// Every loss, by cause and by CPU.
    pub losses: LossCounts,
    /// Events between the receive thread and the consumer now.
    pub queue_depth: usize,
    /// The source's counters (datagrams, malformed, rejected).
    pub source: SourceCounters,
    /// The receive thread's `/proc` reads.
    pub prefetch: PrefetchCounters,
    /// Events a recorder missed (its channel was full).
    pub recorder_missed: u64,
    /// The process table.
    pub table: TableStats,
}

/// A running monitor. See the [module documentation](self).
pub struct Monitor {
    queue: Arc<Queue>,
    core: core::Core,
    source: Box<dyn ProcSource + Send>,
    recorder: Option<RecorderTx>,
    recorder_missed: Arc<std::sync::atomic::AtomicU64>,
    ready: VecDeque<MonitorItem>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    source_stats: Arc<SourceStats>,
    prefetch_stats: Arc<PrefetchStats>,
    kernel_filtered: bool,
    kernel_mask: EventMask,
    recv_buffer: Option<usize>,
    finished: bool,
    /// The `datagrams` stamp of the last batch handled.
    handled_datagrams: u64,
}

// A monitor can move to another thread or task (`tokio::spawn`).
const _: () = {
    const fn send<T: Send>() {}
    send::<Monitor>();
};

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("kernel_mask", &self.kernel_mask)
            .field("kernel_filtered", &self.kernel_filtered)
            .field("queue_depth", &self.queue.depth())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A builder with the defaults: every event, no filter, ancestors up to 64, everything read from `/proc`.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder::default()
    }

    /// Waits at most `timeout` (`None`: until something comes) for the next batch, handles it, and appends
    /// what it yields to `out`; returns how many items were appended (0 when the timeout passed, or when
    /// nothing in the batch was shown). After the end ([`Monitor::is_finished`]), returns 0 at once.
    pub fn recv(&mut self, out: &mut Vec<MonitorItem>, timeout: Option<Duration>) -> Result<usize, MonitorError> {
        self.send_state_if_wanted();
        if self.ready.is_empty() && !self.finished {
            let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Some(msg) = self.queue.pop(left) {
                self.handle(msg)?;
            }
        }
        let n = self.ready.len();
        out.extend(self.ready.drain(..));
        Ok(n)
    }

    /// True once the source has ended (a recording), receiving failed, or [`Monitor::stop`] was called, and
    /// everything received before was handed out.
    pub fn is_finished(&self) -> bool {
        self.finished && self.ready.is_empty()
    }

    /// Stops the receive thread after one last drain of the socket; what was received before stays to be
    /// handed out by [`Monitor::recv`] and the iterator, which then end.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The process table.
    pub fn table(&self) -> &ProcessTable {
        &self.core.table
    }

    /// The events asked of the kernel: those shown, and those the table and the filters need.
    pub fn kernel_mask(&self) -> EventMask {
        self.kernel_mask
    }

    /// Whether the kernel filters events for this subscription (losses are then counted from the socket's
    /// drop counter).
    pub fn kernel_filtered(&self) -> bool {
        self.kernel_filtered
    }

    /// The socket's receive buffer as the kernel granted it (`None` for a recording).
    pub fn recv_buffer(&self) -> Option<usize> {
        self.recv_buffer
    }

    /// The counters now.
    pub fn counters(&self) -> MonitorCounters {
        let c = &self.core.counts;
        MonitorCounters {
            received: c.received,
            shown: c.shown,
            own: c.own,
            acks: c.acks,
            overruns: c.overruns,
            losses: c.losses.clone(),
            queue_depth: self.queue.depth(),
            source: self.source_stats.get(),
            prefetch: self.prefetch_stats.snapshot(),
            recorder_missed: self.recorder_missed.load(Ordering::Relaxed),
            table: self.core.table.stats(),
        }
    }

    /// Sends the recorder the table's state, if it asked for it (between two batches).
    fn send_state_if_wanted(&mut self) {
        let Some(tx) = &mut self.recorder else { return };
        if tx.state_wanted(self.handled_datagrams) {
            let table = &self.core.table;
            let answer = crate::ProcAnswer::Snapshot { wants: table.config().wants, snapshot: table.as_snapshot() };
            tx.send(crate::RecorderEvent::State { answer, datagrams: self.handled_datagrams });
        }
    }

    /// Handles one message of the receive thread.
    fn handle(&mut self, msg: Msg) -> Result<(), MonitorError> {
        match msg {
            Msg::Batch(mut b) => {
                self.send_state_if_wanted();
                self.core.handle(&mut b, &mut *self.source, self.recorder.as_mut(), &mut self.ready);
                self.handled_datagrams = b.datagrams;
                self.queue.done(b);
                Ok(())
            }
            Msg::Failed(e) => Err(MonitorError::Receive(e)),
            Msg::End => {
                self.finished = true;
                Ok(())
            }
        }
    }
}

impl Iterator for Monitor {
    type Item = Result<MonitorItem, MonitorError>;

    /// Blocks until the next item; `None` at the end.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(Ok(item));
            }
            if self.finished {
                return None;
            }
            let msg = self.queue.pop(None)?;
            if let Err(e) = self.handle(msg) {
                return Some(Err(e));
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}
