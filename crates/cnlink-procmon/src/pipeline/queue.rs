//! The bounded queue between the receive thread and the consumer: batches in arrival order, a blocking pop
//! with a timeout and a polled pop for async consumers (one lock per batch, never per event).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::{Batch, Msg};

/// Spare batches kept for reuse.
const SPARES: usize = 8;

/// The queue. Its bound is in events: a batch is admitted while the events queued (and being handled) plus its
/// own stay within the capacity, or when nothing is queued.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    /// Events queued or being handled.
    depth: AtomicUsize,
    /// Approximate bytes of the prefetched observations queued or being handled.
    observation_bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    msgs: VecDeque<Msg>,
    waker: Option<Waker>,
    spare: Vec<Batch>,
}

impl Queue {
    /// A queue of at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            depth: AtomicUsize::new(0),
            observation_bytes: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the queue usable: it holds plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events queued or being handled now.
    pub(crate) fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Bytes of prefetched observations queued or being handled now.
    pub(crate) fn observation_bytes(&self) -> usize {
        self.observation_bytes.load(Ordering::Relaxed)
    }

    /// Queues `batch` if there is room for its events; gives it back otherwise.
    pub(crate) fn try_push(&self, batch: Batch) -> Result<(), Batch> {
        let events = batch.events();
        let depth = self.depth.load(Ordering::Acquire);
        if depth != 0 && depth + events > self.capacity {
            return Err(batch);
        }
        self.push(Msg::Batch(batch));
        Ok(())
    }

    /// Queues a message whatever the room (an end, a failure, a batch of losses only).
    pub(crate) fn push(&self, msg: Msg) {
        if let Msg::Batch(b) = &msg {
            self.depth.fetch_add(b.events(), Ordering::AcqRel);
            self.observation_bytes.fetch_add(b.observation_bytes, Ordering::AcqRel);
        }
        let waker = {
            let mut s = self.lock();
            s.msgs.push_back(msg);
            s.waker.take()
        };
        self.ready.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next message, waiting at most `timeout` (`None`: until one comes).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Option<Msg> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = self.lock();
        loop {
            if let Some(m) = s.msgs.pop_front() {
                return Some(m);
            }
            s = match deadline {
                None => self.ready.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.ready.wait_timeout(s, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// The next message, or `Pending` with the task's waker registered.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Msg> {
        let mut s = self.lock();
        match s.msgs.pop_front() {
            Some(m) => Poll::Ready(m),
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// A handled batch: its room is released and its storage kept for reuse.
    pub(crate) fn done(&self, mut batch: Batch) {
        self.depth.fetch_sub(batch.events(), Ordering::AcqRel);
        self.observation_bytes.fetch_sub(batch.observation_bytes, Ordering::AcqRel);
        batch.clear();
        let mut s = self.lock();
        if s.spare.len() < SPARES {
            s.spare.push(batch);
        }
    }

    /// An empty batch, reused when one is spare.
    pub(crate) fn spare(&self) -> Batch {
        self.lock().spare.pop().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnlink::proc::{Event, ProcItem};
    use cnlink::wire::EventData;

    fn batch(events: usize) -> Batch {
        let mut b = Batch::default();
        let ev = Event { seq: 0, cpu: 0, timestamp_ns: 0, data: EventData::Exec { process_pid: 1, process_tgid: 1 } };
        b.input.items.extend(std::iter::repeat_n(ProcItem::Event(ev), events));
        b
    }

    #[test]
    fn bounded_in_events_and_released_when_done() {
        let q = Queue::new(10);
        assert!(q.try_push(batch(8)).is_ok());
        // No room for 3 more, but a batch always fits an empty queue.
        let back = q.try_push(batch(3)).unwrap_err();
        assert_eq!(back.events(), 3);
        assert_eq!(q.depth(), 8);
        let Some(Msg::Batch(b)) = q.pop(Some(Duration::ZERO)) else { panic!("a batch") };
        assert_eq!(q.depth(), 8, "room is released when handled, not when taken");
        q.done(b);
        assert_eq!(q.depth(), 0);
        assert!(q.try_push(batch(30)).is_ok());
        assert!(q.pop(Some(Duration::ZERO)).is_some());
        assert!(q.pop(Some(Duration::from_millis(5))).is_none());
        assert!(q.spare().input.items.is_empty());
    }

    #[test]
    fn a_blocked_pop_wakes_on_push() {
        let q = std::sync::Arc::new(Queue::new(10));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.pop(Some(Duration::from_secs(10))));
        q.push(Msg::End);
        assert!(matches!(t.join().unwrap(), Some(Msg::End)));
    }
}
