//! [`BusClient`]: a remote agent or requester of a running bus (blocking).
//!
//! It is a [`cnlink::Connector`] on `NETLINK_USERSOCK` whose peer is the bus's port, plus the bus's control ops
//! from [`crate::ops`]. Requests are matched to replies by the documents' seq/ack rule (same `seq`, `ack + 1`),
//! for control ops and for messages relayed to and from other agents alike. Only datagrams from the bus's port
//! *and* from a trusted uid (root or this client's own, by default; [`BusClient::set_bus_uids`]) are accepted:
//! see [`crate::ops`] for why.
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

use cnlink::wire::{CbId, CnMsgHdr};
use cnlink::{ClientCounters, ClientItem, Connector, OwnedMsg};

use crate::ops::{self, ControlOp};
use crate::wire::{CtlMsg, ListEntry};

pub use crate::ops::{ClientError, CLIENT_RECV_BUFFER};

/// A client of the bus.
#[derive(Debug)]
pub struct BusClient {
    conn: Connector,
    timeout: Duration,
}

/// How [`BusClient::serve_echo`] is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EchoProgress {
    /// Messages answered.
    pub answered: u64,
    /// The client's counters (overruns, rejected datagrams, ...).
    pub counters: ClientCounters,
}

impl BusClient {
    /// Opens a socket (kernel-assigned port, `SO_PASSCRED`, a receive buffer of [`CLIENT_RECV_BUFFER`])
    /// talking to the bus at `bus_port`, trusting [`ops::default_bus_uids`].
    pub fn connect(bus_port: u32) -> Result<BusClient, ClientError> {
        let (protocol, peer, rule, trust) = ops::connector_params(bus_port, &ops::default_bus_uids());
        let conn = Connector::open_with(protocol, peer, rule, trust)?;
        conn.socket().set_recv_buffer(CLIENT_RECV_BUFFER).map_err(cnlink::Error::Io)?;
        Ok(BusClient { conn, timeout: Duration::from_secs(2) })
    }

    /// Accepts datagrams from the bus's port only when they come from one of `uids` (the daemon's user).
    pub fn set_bus_uids(&mut self, uids: &[u32]) {
        self.conn.core_mut().set_trust(ops::trust(uids));
    }

    /// How long control ops wait for the bus's answer (default 2 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying connector (its socket, core and counters).
    pub fn connector(&self) -> &Connector {
        &self.conn
    }

    /// The underlying connector, to change its queue bound, say.
    pub fn connector_mut(&mut self) -> &mut Connector {
        &mut self.conn
    }

    /// The client's counters: overruns, datagrams rejected (not the bus), ...
    pub fn counters(&self) -> ClientCounters {
        self.conn.counters()
    }

    /// This client's port id.
    pub fn port(&self) -> u32 {
        self.conn.socket().port()
    }

    /// Runs one control op ([`crate::ops`]) to its end: one request per LIST page, one for the others.
    pub fn control<O: ControlOp>(&mut self, mut op: O) -> Result<O::Output, ClientError> {
        loop {
            let reply = self.conn.request(CbId::CONNECTOR, &op.request(), self.timeout)?;
            if let Some(out) = op.on_reply(&reply)? {
                return Ok(out);
            }
        }
    }

    /// Registers `id` for this client: the bus forwards that id's messages here and relays the replies.
    pub fn register(&mut self, id: CbId, name: &str) -> Result<(), ClientError> {
        self.control(ops::register(id, name))
    }

    /// Unregisters `id` (only its registrant, or root, may).
    pub fn unregister(&mut self, id: CbId) -> Result<(), ClientError> {
        self.control(ops::unregister(id))
    }

    /// Subscribes to `group` (any number but 0).
    pub fn join(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(ops::join(group))
    }

    /// Leaves `group`.
    pub fn leave(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(ops::leave(group))
    }

    /// Sends a message for `id` to `group` (0: the group of the id's owner), like `cn_netlink_send`. Allowed
    /// to root, to the id's registrant, and to users a `[[send]]` rule of the bus's policy names for it.
    pub fn send_group(&mut self, group: u32, id: CbId, data: &[u8]) -> Result<(), ClientError> {
        self.control(ops::send_group(group, id, data)?)
    }

    /// Sends a historical notification request (`cn_ctl_msg`), byte for byte as a 2.6.x client did.
    pub fn notify(&mut self, req: &CtlMsg) -> Result<(), ClientError> {
        self.control(ops::notify(req))
    }

    /// Every registered id, in registration order (the `/proc/net/connector` equivalent).
    pub fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        self.control(ops::list())
    }

    /// The daemon's counters, named as in [`crate::BusCounters::NAMES`].
    pub fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        self.control(ops::stats())
    }

    /// Sends `data` to `id` and waits for the reply (same `seq`, `ack + 1`). A refusal by the bus (policy,
    /// limit) comes back as [`ClientError::Refused`].
    pub fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, ClientError> {
        ops::message_reply(id, self.conn.request(id, data, timeout)?)
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

    /// The next message that is not a reply (forwarded requests, group messages, notifications), or an overrun;
    /// `None` after `timeout`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<ClientItem>, ClientError> {
        Ok(self.conn.recv(timeout)?)
    }

    /// Serves as the userspace twin of the kernel's `cn_test`: registers `ids` (those not registered to it yet)
    /// and answers every message to one of them with the same `seq`, `ack + 1` and the same payload, until
    /// `keep_going` says stop (asked at least every 200 ms, with the progress so far). Every `recheck` it makes
    /// sure the ids are still registered to it and registers them again if not: that is how an agent comes back
    /// after the daemon restarts (never with an untrusted holder of the bus's port). Overruns and send errors
    /// are counted and skipped.
    pub fn serve_echo(
        &mut self,
        ids: &[(CbId, &str)],
        recheck: Duration,
        mut keep_going: impl FnMut(&EchoProgress) -> bool,
    ) -> Result<EchoProgress, ClientError> {
        self.reregister(ids)?;
        let mut progress = EchoProgress { answered: 0, counters: self.counters() };
        let mut next_check = Instant::now() + recheck;
        while keep_going(&progress) {
            if Instant::now() >= next_check {
                // The bus may have restarted: a failure here is not fatal, the next check tries again.
                let _ = self.reregister(ids);
                next_check = Instant::now() + recheck;
            }
            let wait = next_check.saturating_duration_since(Instant::now()).min(Duration::from_millis(200));
            match self.recv(Some(wait)) {
                Ok(Some(ClientItem::Message(msg))) if ids.iter().any(|(id, _)| *id == msg.hdr.id) => {
                    match self.reply(&msg, &msg.data) {
                        Ok(()) => progress.answered += 1,
                        // The bus went away or is full: keep serving.
                        Err(ClientError::Connector(cnlink::Error::Io(_))) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(_) | Err(ClientError::Connector(cnlink::Error::Io(_))) => {}
                Err(e) => return Err(e),
            }
            progress.counters = self.counters();
        }
        Ok(progress)
    }

    /// Registers again those of `ids` the bus does not have registered to this client.
    fn reregister(&mut self, ids: &[(CbId, &str)]) -> Result<(), ClientError> {
        let me = self.port();
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
