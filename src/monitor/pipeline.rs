//! The receive thread: drains the socket in batches into a bounded queue, so that formatting and `/proc` reads
//! never slow receiving down.
//!
//! After each wake-up it sleeps `latency` so that many events accumulate in the socket, then drains them all in
//! a few `recvmmsg` calls: a bounded added latency for far fewer wake-ups and syscalls. A batch that already holds
//! an exec is handed on at once when names are looked up, so that `/proc/PID` is read before the process can
//! exit. The queue is bounded in
//! events; when the consumer falls so far behind that it stays full for [`QUEUE_WAIT`], the batch's events are
//! dropped and counted (the loss reaches the output as a [`Msg::QueueLost`] record), never silently.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnlink::proc::{ProcEvents, ProcItem};
use cnlink::wire::EventData;

/// How often the receive thread looks at the stop flag while the socket is idle.
const POLL: Duration = Duration::from_millis(100);
/// How long a full queue may hold up the receive thread before a batch is dropped (the socket's own buffer
/// keeps absorbing meanwhile).
const QUEUE_WAIT: Duration = Duration::from_millis(500);

/// What the receive thread sends.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Items in arrival order.
    Items(Vec<ProcItem>),
    /// This many events were dropped because the queue was full.
    QueueLost(u64),
    /// Receiving failed; the thread has stopped.
    Failed(cnlink::Error),
}

/// The consumer's end.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) rx: Receiver<Msg>,
    recycle: Sender<Vec<ProcItem>>,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<ProcEvents>>,
}

impl Pipeline {
    /// Starts the receive thread; it stops when `stop` is set.
    pub(crate) fn spawn(
        events: ProcEvents,
        latency: Duration,
        exec_urgent: bool,
        queue_max: usize,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Pipeline> {
        let (tx, rx) = mpsc::channel();
        let (recycle, pool) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let r =
            Receiving { events, tx, pool, queued: queued.clone(), stop: stop.clone(), latency, exec_urgent, queue_max };
        let handle = std::thread::Builder::new().name("cnlink-recv".into()).spawn(move || r.run())?;
        Ok(Pipeline { rx, recycle, queued, stop, handle: Some(handle) })
    }

    /// Events queued between the receive thread and the consumer now.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Hands a processed batch back for reuse and releases its room in the queue.
    pub(crate) fn done(&self, mut batch: Vec<ProcItem>) {
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
        let _ = self.recycle.send(batch);
    }

    /// Stops the thread and returns the subscription (for its counters). Messages sent before the stop stay in
    /// `rx`.
    pub(crate) fn stop(&mut self) -> Option<ProcEvents> {
        self.stop.store(true, Ordering::Release);
        self.handle.take().and_then(|h| h.join().ok())
    }
}

fn has_exec(batch: &[ProcItem]) -> bool {
    batch.iter().any(|i| matches!(i, ProcItem::Event(e) if matches!(e.data, EventData::Exec { .. })))
}

struct Receiving {
    events: ProcEvents,
    tx: Sender<Msg>,
    pool: Receiver<Vec<ProcItem>>,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    latency: Duration,
    exec_urgent: bool,
    queue_max: usize,
}

impl Receiving {
    fn run(mut self) -> ProcEvents {
        let mut dropped = 0u64;
        let mut batch = Vec::with_capacity(1024);
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            // When stopping, one last drain of what is already queued in the socket.
            let wait = if stopping { Some(Duration::ZERO) } else { Some(POLL) };
            match self.events.recv_items(&mut batch, wait) {
                Ok(0) if stopping => break,
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) => {
                    let _ = self.tx.send(Msg::Failed(e));
                    break;
                }
            }
            let hand_on_now = stopping || self.latency.is_zero() || (self.exec_urgent && has_exec(&batch));
            if !hand_on_now {
                std::thread::sleep(self.latency);
                if let Err(e) = self.events.recv_items(&mut batch, Some(Duration::ZERO)) {
                    let _ = self.tx.send(Msg::Failed(e));
                    break;
                }
            }
            if !self.wait_for_room(batch.len()) {
                // Keep loss records and markers; drop (and count) the events.
                let before = batch.len();
                batch.retain(|i| !matches!(i, ProcItem::Event(_)));
                dropped += (before - batch.len()) as u64;
                self.queued.fetch_add(batch.len(), Ordering::AcqRel);
            }
            if dropped > 0 && self.tx.send(Msg::QueueLost(dropped)).is_ok() {
                dropped = 0;
            }
            let next = self.pool.try_recv().unwrap_or_else(|_| Vec::with_capacity(1024));
            if self.tx.send(Msg::Items(std::mem::replace(&mut batch, next))).is_err() {
                break;
            }
            if stopping {
                break;
            }
        }
        self.events
    }

    /// Reserves room for `n` items, waiting up to [`QUEUE_WAIT`]; false when there is none.
    fn wait_for_room(&self, n: usize) -> bool {
        let deadline = Instant::now() + QUEUE_WAIT;
        loop {
            let q = self.queued.load(Ordering::Acquire);
            if q + n <= self.queue_max || q == 0 {
                self.queued.fetch_add(n, Ordering::AcqRel);
                return true;
            }
            if Instant::now() >= deadline || self.stop.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
