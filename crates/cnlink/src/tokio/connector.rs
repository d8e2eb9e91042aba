//! [`AsyncConnector`]: the async request/reply client.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::engine::{ClientCore, ClientStats, MatchRule, OwnedMsg, Trust};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::wire::{CbId, CnMsgHdr};
use crate::Error;

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
        let (d, seq, ack) = self.core.frame(id, data, sock.port())?;
        sock.send_to(&d, self.core.peer())?;
        Ok((seq, ack))
    }

    /// Sends a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), Error> {
        let sock = self.fd.get_ref();
        let d = crate::wire::datagram(hdr, data, sock.port())?;
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
