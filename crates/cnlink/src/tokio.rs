//! Async drivers on tokio (feature `tokio`): the same engines as the blocking ones, on an `AsyncFd`.
//!
//! ```no_run
//! # async fn run() -> Result<(), cnlink::Error> {
//! use cnlink::proc::{ProcItem, ProcOptions};
//! use cnlink::tokio::ProcStream;
//!
//! let mut events = ProcStream::subscribe(ProcOptions::default()).await?;
//! let mut items = Vec::new();
//! while events.recv_items(&mut items).await? > 0 {
//!     for item in items.drain(..) {
//!         if let ProcItem::Event(ev) = item {
//!             println!("{:?}", ev.data);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::engine::{ClientCore, ClientStats, MatchRule, OwnedMsg, Trust};
use crate::proc::{self, ProcEvents, ProcItem, ProcOptions, Receiver, Stats, Subscription};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::wire::{CbId, CnMsgHdr};
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

/// The async twin of [`crate::Connector`].
#[derive(Debug)]
pub struct AsyncConnector {
    fd: AsyncFd<Socket>,
    core: ClientCore,
    batch: RecvBatch,
}

impl AsyncConnector {
    /// A client of the kernel connector (documents' match rule, trusting only the kernel).
    pub fn open() -> Result<AsyncConnector, Error> {
        Self::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly)
    }

    /// A client of any peer, as [`crate::Connector::open_with`].
    pub fn open_with(protocol: Protocol, peer: NlAddr, rule: MatchRule, trust: Trust) -> Result<AsyncConnector, Error> {
        let sock = Socket::open(protocol)?;
        sock.set_passcred(true)?;
        sock.set_nonblocking(true)?;
        Ok(AsyncConnector {
            fd: crate::socket::async_fd::register(sock)?,
            core: ClientCore::new(peer, rule, trust, crate::connector::random_u32()),
            batch: RecvBatch::new(16, 1 << 16),
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        self.fd.get_ref()
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.core.stats()
    }

    /// Sends a new message to `id`; returns its `(seq, ack)`. Netlink sends to a socket never block.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), Error> {
        let sock = self.fd.get_ref();
        let (d, seq, ack) = self.core.frame(id, data, sock.port_id()?)?;
        sock.send_to(&d, self.core.peer())?;
        Ok((seq, ack))
    }

    /// Sends a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), Error> {
        let sock = self.fd.get_ref();
        let d = crate::wire::datagram(hdr, data, sock.port_id()?)?;
        sock.send_to(&d, self.core.peer())?;
        Ok(())
    }

    /// Sends a request and waits up to `timeout` for its reply.
    ///
    /// Not cancel safe in the sense that a dropped future forgets the request (a late reply then arrives as a new
    /// message); no message is lost.
    pub async fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, Error> {
        let deadline = Instant::now() + timeout;
        let (seq, ack) = self.send(id, data)?;
        self.core.expect(seq, ack, deadline);
        let wait = async {
            loop {
                if let Some(r) = self.core.take_reply(seq, ack) {
                    return Ok(r);
                }
                self.receive().await?;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                self.core.expire(Instant::now());
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// The next message that is not a reply. Cancel safe.
    pub async fn recv(&mut self) -> Result<OwnedMsg, Error> {
        loop {
            if let Some(m) = self.core.next_message() {
                return Ok(m);
            }
            self.receive().await?;
        }
    }

    async fn receive(&mut self) -> Result<(), Error> {
        let mut guard = self.fd.readable_mut().await?;
        match guard.get_inner_mut().recv_batch(&mut self.batch, false) {
            Ok(_) => {
                for (meta, d) in self.batch.iter() {
                    self.core.handle(meta.from, meta.creds, d);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                guard.clear_ready();
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
