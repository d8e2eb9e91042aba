//! A blocking client for any connector id: send, request/reply by seq/ack, receive, join groups.
//!
//! ```no_run
//! use std::time::Duration;
//! use cnlink::{ClientItem, Connector, wire::CbId};
//!
//! let mut c = Connector::open()?;
//! let reply = c.request(CbId::new(14, 0x456), b"ping", Duration::from_secs(1))?;
//! println!("{:?}", reply.data);
//! while let Some(item) = c.recv(Some(Duration::from_secs(1)))? {
//!     match item {
//!         ClientItem::Message(m) => println!("{} {:?}", m.hdr.id, m.data),
//!         ClientItem::Overrun => eprintln!("overrun: the kernel dropped messages"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), cnlink::Error>(())
//! ```
//!
//! The logic is [`crate::engine::ClientCore`]'s; this driver only waits, receives and sends.

pub(crate) mod driver;

use std::time::{Duration, Instant};

use crate::engine::{ClientCore, ClientCounters, ClientItem, MatchRule, OwnedMsg, PendingRequest, Trust};
use crate::proc::{Tap, TapSlot};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::wire::{CbId, CnMsgHdr};
use crate::Error;

pub(crate) use driver::random_u32;

/// A connector client on a blocking socket.
#[derive(Debug)]
pub struct Connector {
    sock: Socket,
    core: ClientCore,
    batch: RecvBatch,
    /// What `SO_RCVTIMEO` is set to on the socket (`None`: no timeout, the kernel's default).
    rcvtimeo: Option<Duration>,
    tap: TapSlot,
}

/// How much of a wait with `left` to go may be a blocking receive under `SO_RCVTIMEO`, if any.
///
/// The kernel rounds that timeout up to whole jiffies (up to 10 ms) and may fire up to an eighth late, so the
/// receive gets at most 7/8 of what is left after 10 ms, floored to whole milliseconds (so that a fixed request
/// timeout sets the option once); a precise `poll` waits for the rest.
fn blocking_slice(left: Duration) -> Option<Duration> {
    let ms = (left.as_millis().min(u64::MAX as u128) as u64).saturating_sub(10) / 8 * 7;
    (ms > 0).then(|| Duration::from_millis(ms))
}

impl Connector {
    /// A client of the kernel connector, matching replies by the documents' rule, trusting only the kernel.
    pub fn open() -> Result<Connector, Error> {
        Self::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly)
    }

    /// A client of any peer: the kernel on `NETLINK_CONNECTOR`, or the userspace bus's port on
    /// `NETLINK_USERSOCK`.
    pub fn open_with(protocol: Protocol, peer: NlAddr, rule: MatchRule, trust: Trust) -> Result<Connector, Error> {
        Ok(Connector {
            sock: driver::open(protocol, false)?,
            core: ClientCore::new(peer, rule, trust, random_u32()?),
            batch: driver::batch(),
            rcvtimeo: None,
            tap: TapSlot::default(),
        })
    }

    /// Sets a tap that sees every datagram received, before the core decodes (or rejects) it, and every overrun,
    /// replacing any tap set before. It runs on the receiving thread: keep it short.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap.set(tap);
    }

    /// Removes the tap and returns it.
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// The socket. While waiting, the connector bounds its blocking receives with `SO_RCVTIMEO`, so a receive on
    /// this socket outside the connector may time out (`WouldBlock`).
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// The sans-IO core: its trust setting, queue bound and counters.
    pub fn core(&self) -> &ClientCore {
        &self.core
    }

    /// The sans-IO core, to change its trust setting ([`ClientCore::set_trust`]) or queue bound.
    pub fn core_mut(&mut self) -> &mut ClientCore {
        &mut self.core
    }

    /// Counters: messages received, rejected (untrusted sender), malformed, overruns, dropped, late replies.
    pub fn counters(&self) -> ClientCounters {
        self.core.counters()
    }

    /// Joins multicast group `group` (on the connector, the group of the id whose `idx` is `group`).
    pub fn join(&self, group: u32) -> Result<(), Error> {
        driver::join(&self.sock, group)
    }

    /// Leaves multicast group `group`.
    pub fn leave(&self, group: u32) -> Result<(), Error> {
        driver::leave(&self.sock, group)
    }

    /// Sends a new message to `id`; returns the `(seq, ack)` it carried.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), Error> {
        let (d, req) = self.core.frame(id, data, self.sock.port())?;
        driver::send(&self.sock, &d, self.core.peer())?;
        Ok((req.seq, req.ack))
    }

    /// Sends a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), Error> {
        let d = self.core.frame_raw(hdr, data, self.sock.port())?;
        driver::send(&self.sock, &d, self.core.peer())
    }

    /// Sends a request to `id` and waits up to `timeout` for the reply the match rule recognises. Other messages
    /// and overruns meanwhile are kept for [`Connector::recv`]; an overrun does not end the wait. When this
    /// returns an error the request is forgotten: its reply, if it comes, is a message for `recv`.
    pub fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, Error> {
        let (d, req) = self.core.start_request(Instant::now(), id, data, self.sock.port(), timeout)?;
        let mut pending = PendingRequest::new(&mut self.core, req);
        driver::send(&self.sock, &d, pending.core().peer())?;
        loop {
            if let Some(outcome) = pending.poll_reply() {
                return outcome.map_err(|e| driver::request_error(e, timeout));
            }
            let deadline = pending.core().poll_timeout();
            receive(&self.sock, &mut self.batch, &mut self.rcvtimeo, pending.core(), &mut self.tap, deadline)?;
            pending.core().handle_timeout(Instant::now());
        }
    }

    /// The next message that is not a reply, or an overrun, waiting up to `timeout` (`None`: forever).
    /// `Ok(None)` on timeout.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<ClientItem>, Error> {
        let deadline = timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future));
        loop {
            if let Some(item) = self.core.poll_item() {
                return Ok(Some(item));
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Ok(None);
            }
            receive(&self.sock, &mut self.batch, &mut self.rcvtimeo, &mut self.core, &mut self.tap, deadline)?;
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(30 * 365 * 86_400)
}

/// Waits until `deadline` (`None`: forever) for datagrams and feeds whatever arrives to the core.
///
/// One system call in the usual case: a blocking `recvmmsg` bounded by `SO_RCVTIMEO` (set only when the bound
/// changes; see [`blocking_slice`]). When that times out, or the wait is too short for it, or the socket was made
/// non-blocking, the rest of the wait is a `poll` to the deadline and a non-blocking receive.
fn receive(
    sock: &Socket,
    batch: &mut RecvBatch,
    rcvtimeo: &mut Option<Duration>,
    core: &mut ClientCore,
    tap: &mut TapSlot,
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let slice = match deadline {
        None => Some(None),
        Some(d) => blocking_slice(d.saturating_duration_since(Instant::now())).map(Some),
    };
    if let Some(bound) = slice {
        if *rcvtimeo != bound {
            sock.set_recv_timeout(bound)?;
            *rcvtimeo = bound;
        }
        let got = sock.recv_batch(batch, true);
        if driver::absorb(core, batch, got, tap)? {
            return Ok(());
        }
    }
    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) || !sock.wait_readable(left)? {
        return Ok(());
    }
    let got = sock.recv_batch(batch, false);
    driver::absorb(core, batch, got, tap).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_slices() {
        assert_eq!(blocking_slice(Duration::from_millis(5)), None);
        assert_eq!(blocking_slice(Duration::from_millis(90)), Some(Duration::from_millis(70)));
        assert!(blocking_slice(Duration::MAX).is_some(), "no overflow for absurd timeouts");
    }
}
