//! The monitor as an async `Stream` (feature `tokio`; it needs no particular runtime: the receive thread is a
//! thread, and the queue wakes the task that polls).

use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Monitor, MonitorError, MonitorItem};

impl Monitor {
    /// Handles queued batches until one yields items or the monitor ends; `Pending` (with the task's waker
    /// registered) when nothing is queued.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), MonitorError>> {
        while self.ready.is_empty() && !self.finished {
            match self.queue.poll_pop(cx) {
                Poll::Ready(msg) => self.handle(msg)?,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for the next batch that yields items and appends them to `out`; returns how many (0 only at the
    /// end).
    ///
    /// Cancel safe: a batch taken from the queue is handled within one poll, and its items stay in the
    /// monitor until a call returns them.
    pub async fn recv_async(&mut self, out: &mut Vec<MonitorItem>) -> Result<usize, MonitorError> {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await?;
        let n = self.ready.len();
        out.extend(self.ready.drain(..));
        Ok(n)
    }
}

impl futures_core::Stream for Monitor {
    type Item = Result<MonitorItem, MonitorError>;

    /// The next item; the table's work for a batch (a few `/proc` reads per fork or exec that the receive
    /// thread did not read) runs inside the poll.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => Poll::Ready(this.ready.pop_front().map(Ok)),
        }
    }
}
