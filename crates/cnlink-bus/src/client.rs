//! [`BusClient`]: a remote agent or requester of a running bus (blocking).
//!
//! It is a [`cnlink::Connector`] on `NETLINK_USERSOCK` whose peer is the bus's port, trusting only that port, plus
//! the bus's control ops. Requests are matched to replies by the documents' seq/ack rule (same `seq`,
//! `ack + 1`), for control ops and for messages relayed to and from other agents alike.
//!
//! ```no_run
//! use std::time::Duration;
//! use cnlink::wire::CbId;
//! use cnlink_bus::BusClient;
//!
//! let mut c = BusClient::connect(cnlink_bus::DEFAULT_PORT)?;
//! let reply = c.request(CbId::new(14, 0x456), b"ping", Duration::from_secs(1))?;
//! assert_eq!(reply.data, b"ping");
//! # Ok::<(), cnlink_bus::ClientError>(())
//! ```

use std::time::{Duration, Instant};

use cnlink::socket::{NlAddr, Protocol};
use cnlink::wire::{CbId, CnMsgHdr};
use cnlink::{Connector, MatchRule, OwnedMsg, Trust};

use crate::core::Stats;
use crate::wire::{self as bw, BusOp, CtlError, CtlMsg, ListEntry, ListPage, Reply};

/// The receive buffer a client asks for: 4 MiB, as the daemon does for its own socket (`SO_RCVBUFFORCE` when
/// privileged, else capped by `net.core.rmem_max`). The bus never blocks on a full client: what does not fit is
/// dropped and counted (`dropped_full`), so a subscriber needs room for bursts; the memory is only used while
/// messages wait. Change it with `client.connector().socket().set_recv_buffer(bytes)`.
pub const CLIENT_RECV_BUFFER: usize = 4 << 20;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The bus answered with an error (a positive errno: `EPERM` for a policy denial, `EINVAL` for a duplicate
    /// id, `EDQUOT` for a per-user limit, `ESRCH` when nobody listens, ...).
    #[error("the bus refused op {op:#x}: {}", std::io::Error::from_raw_os_error(*.errno as i32))]
    Refused {
        /// The op refused ([`bw::BUS_OP_MESSAGE`] for a message to an id).
        op: u16,
        /// The errno.
        errno: u32,
    },
    /// The bus's reply did not decode.
    #[error("malformed reply from the bus: {0}")]
    BadReply(#[from] CtlError),
    /// Socket, timeout or framing trouble.
    #[error(transparent)]
    Connector(#[from] cnlink::Error),
}

impl ClientError {
    /// The errno the bus answered, if it answered with one.
    pub fn errno(&self) -> Option<u32> {
        match self {
            ClientError::Refused { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Turns a message on the control id into its body, or the error it carries.
pub fn decode_reply(msg: &OwnedMsg) -> Result<Vec<u8>, ClientError> {
    let r = Reply::parse(&msg.data)?;
    if r.errno != 0 {
        return Err(ClientError::Refused { op: r.op, errno: r.errno });
    }
    Ok(r.body.to_vec())
}

/// Appends one LIST reply body to `all`; true when that was the last page.
pub(crate) fn add_list_page(all: &mut Vec<ListEntry>, body: &[u8]) -> Result<bool, ClientError> {
    let page = ListPage::parse(body)?;
    let done = page.entries.is_empty() || all.len() + page.entries.len() >= page.total as usize;
    all.extend(page.entries);
    Ok(done)
}

/// A STATS reply body with each counter named as in [`Stats::NAMES`].
pub(crate) fn named_stats(body: &[u8]) -> Result<Vec<(String, u64)>, ClientError> {
    Ok(bw::parse_stats(body)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| (Stats::NAMES.get(i).map_or_else(|| format!("counter{i}"), |s| s.to_string()), v))
        .collect())
}

/// A client of the bus.
#[derive(Debug)]
pub struct BusClient {
    conn: Connector,
    timeout: Duration,
}

impl BusClient {
    /// Opens a socket (kernel-assigned port, `SO_PASSCRED`, a receive buffer of [`CLIENT_RECV_BUFFER`])
    /// talking to the bus at `bus_port`.
    pub fn connect(bus_port: u32) -> Result<BusClient, ClientError> {
        let conn =
            Connector::open_with(Protocol::Usersock, NlAddr::port(bus_port), MatchRule::Documented, Trust::PeerOnly)?;
        conn.socket().set_recv_buffer(CLIENT_RECV_BUFFER).map_err(cnlink::Error::Io)?;
        Ok(BusClient { conn, timeout: Duration::from_secs(2) })
    }

    /// How long control ops wait for the bus's answer (default 2 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying connector (its socket, counters).
    pub fn connector(&self) -> &Connector {
        &self.conn
    }

    /// This client's port id.
    pub fn port(&self) -> Result<u32, ClientError> {
        Ok(self.conn.socket().port())
    }

    fn control(&mut self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self.conn.request(CbId::CONNECTOR, data, self.timeout)?;
        decode_reply(&reply)
    }

    /// Registers `id` for this client: the bus forwards that id's messages here and relays the replies.
    pub fn register(&mut self, id: CbId, name: &str) -> Result<(), ClientError> {
        self.control(&BusOp::Register { id, name: name.into() }.to_bytes()).map(drop)
    }

    /// Unregisters `id` (only its registrant, or root, may).
    pub fn unregister(&mut self, id: CbId) -> Result<(), ClientError> {
        self.control(&BusOp::Unregister { id }.to_bytes()).map(drop)
    }

    /// Subscribes to `group` (any number but 0).
    pub fn join(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(&BusOp::Join { group }.to_bytes()).map(drop)
    }

    /// Leaves `group`.
    pub fn leave(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(&BusOp::Leave { group }.to_bytes()).map(drop)
    }

    /// Sends a message for `id` to `group` (0: the group of the id's owner), like `cn_netlink_send`. Allowed
    /// to root, to the id's registrant, and to users a `[[send]]` rule of the bus's policy names for it.
    pub fn send_group(&mut self, group: u32, id: CbId, data: &[u8]) -> Result<(), ClientError> {
        let op = bw::send_op(group, CnMsgHdr { id, ..Default::default() }, data).map_err(cnlink::Error::Wire)?;
        self.control(&op).map(drop)
    }

    /// Sends a historical notification request (`cn_ctl_msg`), byte for byte as a 2.6.x client did.
    pub fn notify(&mut self, req: &CtlMsg) -> Result<(), ClientError> {
        self.control(&req.to_bytes()).map(drop)
    }

    /// Every registered id, in registration order (the `/proc/net/connector` equivalent).
    pub fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.control(&BusOp::List { start: all.len() as u32 }.to_bytes())?;
            if add_list_page(&mut all, &page)? {
                return Ok(all);
            }
        }
    }

    /// The daemon's counters, named as in [`Stats::NAMES`].
    pub fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        named_stats(&self.control(&BusOp::Stats.to_bytes())?)
    }

    /// Sends `data` to `id` and waits for the reply (same `seq`, `ack + 1`). A refusal by the bus (policy,
    /// limit) comes back as [`ClientError::Refused`].
    pub fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, ClientError> {
        let reply = self.conn.request(id, data, timeout)?;
        if reply.hdr.id == CbId::CONNECTOR && id != CbId::CONNECTOR {
            decode_reply(&reply)?;
        }
        Ok(reply)
    }

    /// Sends `data` to `id` without waiting; returns the `(seq, ack)` it carried.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), ClientError> {
        Ok(self.conn.send(id, data)?)
    }

    /// Sends a message with a header of the caller's choosing.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), ClientError> {
        Ok(self.conn.send_raw(hdr, data)?)
    }

    /// Answers `msg` with the documents' rule: same id and `seq`, `ack + 1`.
    pub fn reply(&mut self, msg: &OwnedMsg, data: &[u8]) -> Result<(), ClientError> {
        self.send_raw(msg.hdr.reply(), data)
    }

    /// The next message that is not a reply (forwarded requests, group messages, notifications); `None` after
    /// `timeout`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<OwnedMsg>, ClientError> {
        Ok(self.conn.recv(timeout)?)
    }

    /// Serves as the userspace twin of the kernel's `cn_test`: registers `ids` (those not registered to it yet)
    /// and answers every message to one
    /// of them with the same `seq`, `ack + 1` and the same payload, until `keep_going` says stop (checked at least
    /// every 200 ms). Every `recheck` it makes sure the ids are still registered to it and registers them again if
    /// not: that is how an agent comes back after the daemon restarts. Returns how many messages were answered.
    pub fn serve_echo(
        &mut self,
        ids: &[(CbId, &str)],
        recheck: Duration,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<u64, ClientError> {
        self.reregister(ids)?;
        let mut answered = 0;
        let mut next_check = Instant::now() + recheck;
        while keep_going() {
            if Instant::now() >= next_check {
                // The bus may have restarted: a failure here is not fatal, the next check tries again.
                let _ = self.reregister(ids);
                next_check = Instant::now() + recheck;
            }
            let wait = next_check.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            let msg = match self.recv(Some(wait)) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(ClientError::Connector(cnlink::Error::Io(_))) => continue,
                Err(e) => return Err(e),
            };
            if ids.iter().any(|(id, _)| *id == msg.hdr.id) {
                let data = msg.data.clone();
                match self.reply(&msg, &data) {
                    Ok(()) => answered += 1,
                    // The bus went away or is full: keep serving.
                    Err(ClientError::Connector(cnlink::Error::Io(_))) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(answered)
    }

    /// Registers again those of `ids` the bus does not have registered to this client.
    fn reregister(&mut self, ids: &[(CbId, &str)]) -> Result<(), ClientError> {
        let me = self.port()?;
        let list = self.list()?;
        for (id, name) in ids {
            if !list.iter().any(|e| e.id == *id && e.port == me) {
                self.register(*id, name)?;
            }
        }
        Ok(())
    }

    /// Waits until the bus answers (a STATS op), trying every 20 ms for up to `timeout`: for agents started
    /// alongside the daemon.
    pub fn wait_for_bus(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        let saved = self.timeout;
        self.timeout = Duration::from_millis(50);
        let r = loop {
            match self.stats() {
                Ok(_) => break Ok(()),
                Err(e) if Instant::now() >= deadline => break Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        self.timeout = saved;
        r
    }
}
