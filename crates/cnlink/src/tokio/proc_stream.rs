//! [`ProcStream`]: proc events as an async stream.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::proc::{self, ProcEvents, ProcItem, ProcOptions, Receiver, Stats, Subscription};
use crate::Error;

/// Proc events as an async stream. Dropping it unsubscribes.
#[derive(Debug)]
pub struct ProcStream {
    fd: AsyncFd<Subscription>,
    rx: Receiver,
    kernel_filtered: bool,
    ack_timeout: Duration,
    ready: std::collections::VecDeque<ProcItem>,
    scratch: Vec<ProcItem>,
}

impl ProcStream {
    /// Subscribes (the kernel acks at once; the wait for it runs on the blocking pool).
    pub async fn subscribe(opts: ProcOptions) -> Result<ProcStream, Error> {
        let events = tokio::task::spawn_blocking(move || ProcEvents::subscribe(opts))
            .await
            .map_err(|e| Error::Io(io::Error::other(e)))??;
        let kernel_filtered = events.kernel_filtered();
        let (sub, rx) = events.into_parts();
        sub.sock.set_nonblocking(true)?;
        Ok(ProcStream {
            fd: crate::socket::async_fd::register(sub)?,
            rx,
            kernel_filtered,
            ack_timeout: opts.ack_timeout,
            ready: Default::default(),
            scratch: Vec::new(),
        })
    }

    /// Waits until items are available and appends them all to `out`; returns how many.
    ///
    /// Cancel safe: items are only taken from the socket inside a single poll, and nothing is lost if the
    /// future is dropped before it completes.
    pub async fn recv_items(&mut self, out: &mut Vec<ProcItem>) -> Result<usize, Error> {
        std::future::poll_fn(|cx| self.poll_items(cx, out)).await
    }

    /// Counters, as [`ProcEvents::stats`].
    pub fn stats(&self) -> Stats {
        self.rx.decoder.stats()
    }

    /// Whether the kernel filters for this subscription.
    pub fn kernel_filtered(&self) -> bool {
        self.kernel_filtered
    }

    fn poll_items(&mut self, cx: &mut Context<'_>, out: &mut Vec<ProcItem>) -> Poll<Result<usize, Error>> {
        let before = out.len();
        out.extend(self.rx.pending.drain(..));
        if out.len() > before {
            return Poll::Ready(Ok(out.len() - before));
        }
        loop {
            let mut guard = ready!(self.fd.poll_read_ready_mut(cx))?;
            let overruns = self.rx.decoder.stats().overruns;
            let sub = guard.get_inner_mut();
            self.rx.drain(&sub.sock, out)?;
            if !self.kernel_filtered && self.rx.decoder.stats().overruns > overruns {
                proc::sync_cpus(sub, &mut self.rx, self.ack_timeout)?;
                out.extend(self.rx.pending.drain(..));
            }
            if out.len() > before {
                // More may be queued: leave readiness set so the next call tries the socket first.
                return Poll::Ready(Ok(out.len() - before));
            }
            guard.clear_ready();
        }
    }
}

impl futures_core::Stream for ProcStream {
    type Item = Result<ProcItem, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(item) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(item)));
        }
        let mut scratch = std::mem::take(&mut this.scratch);
        let r = this.poll_items(cx, &mut scratch);
        this.ready.extend(scratch.drain(..));
        this.scratch = scratch;
        match r {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(_)) => Poll::Ready(this.ready.pop_front().map(Ok)),
        }
    }
}
