//! A blocking client for any connector id: send, request/reply by seq/ack, receive, join groups.
//!
//! ```no_run
//! use std::time::Duration;
//! use cnlink::{Connector, wire::CbId};
//!
//! let mut c = Connector::open()?;
//! let reply = c.request(CbId::new(14, 0x456), b"ping", Duration::from_secs(1))?;
//! println!("{:?}", reply.data);
//! # Ok::<(), cnlink::Error>(())
//! ```

use std::time::{Duration, Instant};

use crate::engine::{ClientCore, ClientStats, MatchRule, OwnedMsg, Trust};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::wire::{CbId, CnMsgHdr};
use crate::Error;

/// A connector client on a blocking socket.
#[derive(Debug)]
pub struct Connector {
    sock: Socket,
    core: ClientCore,
    batch: RecvBatch,
    /// What `SO_RCVTIMEO` is set to on the socket (`None`: no timeout, the kernel's default).
    rcvtimeo: Option<Duration>,
}

/// How much of a wait with `left` to go may be a blocking receive under `SO_RCVTIMEO`, if any.
///
/// The kernel rounds that timeout up to whole jiffies (up to 10 ms at `HZ=100`) and its timer wheel may fire up
/// to an eighth of the timeout late, so the receive gets at most 7/8 of what is left after 10 ms: `r + r/8 + 10 ms`
/// stays below `left`. The value is floored to whole milliseconds, so that waits of the same length (a client's
/// fixed request timeout) keep one setting and the socket option is set once, not on every wait. What the
/// blocking receive does not cover is waited for with a precise `poll`; waits under about 12 ms only poll.
fn blocking_slice(left: Duration) -> Option<Duration> {
    let ms = (left.as_millis().min(u64::MAX as u128) as u64).saturating_sub(10) * 7 / 8;
    (ms > 0).then(|| Duration::from_millis(ms))
}

pub(crate) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
    u32::from_ne_bytes(b)
}

impl Connector {
    /// A client of the kernel connector, matching replies by the documents' rule, trusting only the kernel.
    pub fn open() -> Result<Connector, Error> {
        Self::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly)
    }

    /// A client of any peer: the kernel on `NETLINK_CONNECTOR`, or the userspace bus's port on
    /// `NETLINK_USERSOCK`.
    pub fn open_with(protocol: Protocol, peer: NlAddr, rule: MatchRule, trust: Trust) -> Result<Connector, Error> {
        let sock = Socket::open(protocol).map_err(|e| match e.raw_os_error() {
            Some(libc::EPROTONOSUPPORT) if protocol == Protocol::Connector => Error::NoConnector,
            _ => Error::Io(e),
        })?;
        sock.set_passcred(true)?;
        Ok(Connector {
            sock,
            core: ClientCore::new(peer, rule, trust, random_u32()),
            batch: RecvBatch::new(16, 1 << 16),
            rcvtimeo: None,
        })
    }

    /// The socket. While waiting, the connector bounds its blocking receives with `SO_RCVTIMEO`, so a receive on
    /// this socket outside the connector may time out (`WouldBlock`).
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// Counters: messages received, rejected (untrusted sender), malformed.
    pub fn stats(&self) -> ClientStats {
        self.core.stats()
    }

    /// Joins multicast group `group` (on the connector, the group of the id whose `idx` is `group`).
    pub fn join(&self, group: u32) -> Result<(), Error> {
        self.sock.add_membership(group).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => {
                Error::PermissionDenied("joining this group needs CAP_NET_ADMIN (6.6+ allows odd groups)")
            }
            _ => Error::Io(e),
        })
    }

    /// Leaves multicast group `group`.
    pub fn leave(&self, group: u32) -> Result<(), Error> {
        Ok(self.sock.drop_membership(group)?)
    }

    fn send_bytes(&self, d: &[u8]) -> Result<(), Error> {
        self.sock.send_to(d, self.core.peer()).map_err(|e| match e.raw_os_error() {
            Some(libc::ECONNREFUSED) if self.sock.protocol() == Protocol::Connector => {
                Error::ForeignNamespace("network")
            }
            _ => Error::Io(e),
        })?;
        Ok(())
    }

    /// Sends a new message to `id`; returns the `(seq, ack)` it carried.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), Error> {
        let (d, seq, ack) = self.core.frame(id, data, self.sock.port())?;
        self.send_bytes(&d)?;
        Ok((seq, ack))
    }

    /// Sends a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), Error> {
        let d = crate::wire::datagram(hdr, data, self.sock.port())?;
        self.send_bytes(&d)
    }

    /// Sends a request to `id` and waits up to `timeout` for the reply the match rule recognises. Other messages
    /// that arrive meanwhile are kept for [`Connector::recv`].
    pub fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, Error> {
        let deadline = Instant::now() + timeout;
        let (seq, ack) = self.send(id, data)?;
        self.core.expect(seq, ack, deadline);
        loop {
            if let Some(reply) = self.core.take_reply(seq, ack) {
                return Ok(reply);
            }
            if deadline.saturating_duration_since(Instant::now()).is_zero() {
                self.core.expire(Instant::now());
                return Err(Error::Timeout(timeout));
            }
            self.receive(Some(deadline))?;
        }
    }

    /// The next message that is not a reply, waiting up to `timeout` (`None`: forever). `Ok(None)` on timeout.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<OwnedMsg>, Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = self.core.next_message() {
                return Ok(Some(m));
            }
            if deadline.is_some_and(|d| d.saturating_duration_since(Instant::now()).is_zero()) {
                return Ok(None);
            }
            self.receive(deadline)?;
        }
    }

    /// Waits until `deadline` (`None`: forever) for datagrams and feeds whatever arrives to the core.
    ///
    /// One system call in the usual case: a blocking `recvmmsg` bounded by `SO_RCVTIMEO` (set only when the
    /// bound changes; see [`blocking_slice`]). When that times out, or the wait is too short for it, or the
    /// socket was made non-blocking, the rest of the wait is a `poll` to the deadline and a non-blocking receive.
    fn receive(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let slice = match deadline {
            None => Some(None),
            Some(d) => blocking_slice(d.saturating_duration_since(Instant::now())).map(Some),
        };
        if let Some(bound) = slice {
            if self.rcvtimeo != bound {
                self.sock.set_recv_timeout(bound)?;
                self.rcvtimeo = bound;
            }
            match self.sock.recv_batch(&mut self.batch, true) {
                Ok(_) => {
                    self.feed();
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) || !self.sock.wait_readable(left)? {
            return Ok(());
        }
        match self.sock.recv_batch(&mut self.batch, false) {
            Ok(_) => {
                self.feed();
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Hands the datagrams of the last receive to the core.
    fn feed(&mut self) {
        for (meta, d) in self.batch.iter() {
            self.core.handle(meta.from, meta.creds, d);
        }
    }
}
