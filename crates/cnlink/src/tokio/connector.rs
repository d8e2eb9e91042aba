//! [`AsyncConnector`]: the async request/reply client, a thin loop over the same core as [`crate::Connector`].

use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::connector::driver;
use crate::engine::{ClientCore, ClientCounters, ClientItem, MatchRule, OwnedMsg, PendingRequest, Trust};
use crate::proc::{Tap, TapSlot};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::wire::{CbId, CnMsgHdr};
use crate::Error;

/// The async twin of [`crate::Connector`]: the same operations, errors and counters.
#[derive(Debug)]
pub struct AsyncConnector {
    fd: AsyncFd<Socket>,
    core: ClientCore,
    batch: RecvBatch,
    tap: TapSlot,
}

impl AsyncConnector {
    /// A client of the kernel connector (documents' match rule, trusting only the kernel). Needs a tokio runtime
    /// with IO enabled.
    pub fn open() -> Result<AsyncConnector, Error> {
        Self::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly)
    }

    /// A client of any peer, as [`crate::Connector::open_with`].
    pub fn open_with(protocol: Protocol, peer: NlAddr, rule: MatchRule, trust: Trust) -> Result<AsyncConnector, Error> {
        Ok(AsyncConnector {
            fd: crate::socket::async_fd::register(driver::open(protocol, true)?)?,
            core: ClientCore::new(peer, rule, trust, driver::random_u32()?),
            batch: driver::batch(),
            tap: TapSlot::default(),
        })
    }

    /// Sets a tap, as [`crate::Connector::set_tap`].
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap.set(tap);
    }

    /// Removes the tap and returns it.
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        self.fd.get_ref()
    }

    /// The sans-IO core: its trust setting, queue bound and counters.
    pub fn core(&self) -> &ClientCore {
        &self.core
    }

    /// The sans-IO core, to change its trust setting ([`ClientCore::set_trust`]) or queue bound.
    pub fn core_mut(&mut self) -> &mut ClientCore {
        &mut self.core
    }

    /// Counters, as [`crate::Connector::counters`].
    pub fn counters(&self) -> ClientCounters {
        self.core.counters()
    }

    /// Joins multicast group `group`, as [`crate::Connector::join`].
    pub fn join(&self, group: u32) -> Result<(), Error> {
        driver::join(self.fd.get_ref(), group)
    }

    /// Leaves multicast group `group`.
    pub fn leave(&self, group: u32) -> Result<(), Error> {
        driver::leave(self.fd.get_ref(), group)
    }

    /// Sends a new message to `id`; returns its `(seq, ack)`. The socket is non-blocking: a full receiver gives
    /// `WouldBlock` rather than a wait.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), Error> {
        let sock = self.fd.get_ref();
        let (d, req) = self.core.frame(id, data, sock.port())?;
        driver::send(sock, &d, self.core.peer())?;
        Ok((req.seq, req.ack))
    }

    /// Sends a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), Error> {
        let sock = self.fd.get_ref();
        let d = self.core.frame_raw(hdr, data, sock.port())?;
        driver::send(sock, &d, self.core.peer())
    }

    /// Sends a request and waits up to `timeout` for its reply, as [`crate::Connector::request`].
    ///
    /// Cancel safe in that nothing is lost: a dropped future forgets the request, and its reply, if it comes, is
    /// a message for [`AsyncConnector::recv`]. Overruns meanwhile are kept for `recv` too.
    pub async fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, Error> {
        let sock = self.fd.get_ref();
        let (d, req) = self.core.start_request(Instant::now(), id, data, sock.port(), timeout)?;
        let mut pending = PendingRequest::new(&mut self.core, req);
        driver::send(sock, &d, pending.core().peer())?;
        loop {
            if let Some(outcome) = pending.poll_reply() {
                return outcome.map_err(|e| driver::request_error(e, timeout));
            }
            let deadline = pending.core().poll_timeout();
            receive(&self.fd, &mut self.batch, pending.core(), &mut self.tap, deadline).await?;
            pending.core().handle_timeout(Instant::now());
        }
    }

    /// The next message that is not a reply, or an overrun. Cancel safe.
    pub async fn recv(&mut self) -> Result<ClientItem, Error> {
        loop {
            if let Some(item) = self.core.poll_item() {
                return Ok(item);
            }
            receive(&self.fd, &mut self.batch, &mut self.core, &mut self.tap, None).await?;
        }
    }
}

/// Waits until the socket is readable or `deadline` passes, then feeds what a non-blocking receive finds to the
/// core.
async fn receive(
    fd: &AsyncFd<Socket>,
    batch: &mut RecvBatch,
    core: &mut ClientCore,
    tap: &mut TapSlot,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let mut guard = match deadline {
        None => fd.readable().await?,
        Some(d) => match tokio::time::timeout_at(d.into(), fd.readable()).await {
            Ok(guard) => guard?,
            Err(_) => return Ok(()),
        },
    };
    let got = guard.get_inner().recv_batch(batch, false);
    if !driver::absorb(core, batch, got, tap)? {
        guard.clear_ready();
    }
    Ok(())
}
