//! The connector core as a sans-IO state machine: no sockets, no threads, no clock.
//!
//! Datagrams go in with [`Core::handle`] (with the time and the sender's port and credentials); datagrams to send
//! come out of [`Core::poll_transmit`], things for the driver to do (run a local callback, watch a client's
//! process, log a refusal) out of [`Core::poll_action`], and [`Core::poll_timeout`] says when
//! [`Core::handle_timeout`] is due. The kernel-side API is here too: [`Core::add_callback`],
//! [`Core::del_callback`], [`Core::send`].
//!
//! Semantics follow the kernel connector (spec §3, §4, §11): a registry of unique ids whose group is their `idx`,
//! exact-id routing, `send` with group 0 meaning "the group of the id's owner" (`ENODEV` without one, `ESRCH` when
//! nobody listens), silent drops of malformed or unroutable input, and the historical notification protocol
//! (§6) on the core's own id `{0xffffffff, 0xffffffff}`, bounded per user (see [`Limits`]). Where the kernel's
//! trust comes from being the kernel, the core adds checks of its own: a remote owner's message reaches the
//! requester it answers and nobody else, a request never takes the reply another socket waits for, and group
//! sends carry an id only its owner (or root, or a policy grant) may use.

mod clients;
mod control;
mod data;
mod errors;
mod limits;
mod notify;
mod registry;
mod routes;
mod stats;
mod subscriptions;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, NlMsg, CONNECTOR_MAX_MSG_SIZE, NLMSG_HDRLEN};
use cnlink::Credentials;

pub use errors::{
    JoinError, LeaveError, MessageError, NotifyError, Refusal, RegisterError, SendError, UnregisterError,
};
pub use limits::{Limits, Usage};
pub use registry::{proc_text, Entry, Owner};
pub use stats::BusCounters;

use crate::policy::Policy;
use clients::Client;
use limits::Ledger;
use notify::NotifyTable;
use registry::Registry;
use routes::Routes;
use subscriptions::Subscriptions;

/// The uid counted for a sender whose credentials are unknown.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// Most actions kept waiting for the driver; beyond it, deliveries are dropped and counted.
const MAX_ACTIONS: usize = 65536;

/// The core's settings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Who may do what, and the per-user limits.
    pub policy: Policy,
    /// How long a forwarded request waits for its reply before its route is forgotten (default 10 s).
    pub route_timeout: Option<Duration>,
}

/// Who sent a datagram: its port id and its kernel-verified credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// The sending socket's port id.
    pub port: u32,
    /// `SCM_CREDENTIALS`, when known.
    pub creds: Option<Credentials>,
}

impl Sender {
    /// The sender's uid ([`UNKNOWN_UID`] without credentials).
    pub fn uid(&self) -> u32 {
        self.creds.map_or(UNKNOWN_UID, |c| c.uid)
    }
}

/// A datagram to send to one or more ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination port ids.
    pub ports: Vec<u32>,
    /// The whole datagram (`nlmsghdr` + `cn_msg` + data).
    pub datagram: Vec<u8>,
}

/// A message for a callback registered in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `cn_msg` header.
    pub hdr: CnMsgHdr,
    /// The data.
    pub data: Vec<u8>,
    /// Who sent it (replies go to `from.port`).
    pub from: Sender,
}

/// A request that was refused, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Who asked.
    pub from: Sender,
    /// The op (0: notification request; [`crate::wire::BUS_OP_MESSAGE`]: a message to an id).
    pub op: u16,
    /// The id concerned, if any.
    pub id: Option<CbId>,
    /// Why.
    pub refusal: Refusal,
}

impl Denial {
    /// The positive errno answered.
    pub fn errno(&self) -> u32 {
        self.refusal.errno()
    }
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Run the local callback for `hdr.id` with this message.
    Deliver(Delivery),
    /// A client now holds state: watch process `pid` and call [`Core::client_gone`] when it exits. Comes out
    /// before the transmits of the request that made the client (its reply included), so that the watch is open
    /// before the client hears back. The pid is the client's as its own pid namespace numbers it: the driver
    /// checks that it names the process holding the client's socket ([`Core::note_watched`]) and otherwise
    /// watches the socket some other way ([`Core::note_unwatched`]); a send to a closed socket
    /// ([`Core::send_failed`]) ends the client in any case.
    Watch {
        /// The client's port.
        port: u32,
        /// Its process id, from its credentials (0 when the driver's pid namespace cannot see it).
        pid: i32,
    },
    /// A client holds nothing any more: stop watching it.
    Unwatch {
        /// The client's port.
        port: u32,
    },
    /// An id was registered.
    Registered {
        /// The id.
        id: CbId,
        /// Who answers for it.
        owner: Owner,
    },
    /// An id was unregistered.
    Unregistered {
        /// The id.
        id: CbId,
        /// Who answered for it.
        owner: Owner,
    },
    /// A request was refused: by the policy or ownership (`EPERM`), a limit (`EDQUOT`, `E2BIG`), a missing id or
    /// listener (`ENOENT`, `ENODEV`, `ESRCH`), another socket's waiting request (`EBUSY`), or malformed control.
    Denied(Denial),
}

/// The connector core.
#[derive(Debug)]
pub struct Core {
    policy: Policy,
    route_timeout: Duration,
    registry: Registry,
    notify: NotifyTable,
    subs: Subscriptions,
    routes: Routes,
    ledger: Ledger,
    clients: HashMap<u32, Client>,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    stats: BusCounters,
}

impl Core {
    /// A core that owns `{0xffffffff, 0xffffffff}` and nothing else.
    pub fn new(config: Config) -> Core {
        let mut registry = Registry::default();
        registry.insert(CbId::CONNECTOR, "connector", Owner::Core, 0);
        Core {
            policy: config.policy,
            route_timeout: config.route_timeout.unwrap_or(Duration::from_secs(10)),
            registry,
            notify: NotifyTable::default(),
            subs: Subscriptions::default(),
            routes: Routes::default(),
            ledger: Ledger::default(),
            clients: HashMap::new(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            stats: BusCounters::default(),
        }
    }

    /// Handles one received datagram. Only its first netlink message and first `cn_msg` count, as in the
    /// kernel; anything malformed is dropped and counted.
    pub fn handle(&mut self, now: Instant, from: Sender, datagram: &[u8]) {
        self.stats.received += 1;
        let Some((hdr, data)) = first_cn_msg(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        self.check_identity(&from);
        if hdr.id == CbId::CONNECTOR {
            self.control(from, hdr, data);
        } else {
            self.data_msg(now, from, hdr, data);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.routes.next_deadline()
    }

    /// Forgets reply routes whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        for r in self.routes.expire(now) {
            self.ledger.release(r.uid, limits::Kind::Routes);
            self.stats.routes_expired += 1;
        }
    }

    /// Registers a callback in this process (`cn_add_callback`). Its messages come out as [`Action::Deliver`].
    pub fn add_callback(&mut self, id: CbId, name: &str) -> Result<(), RegisterError> {
        if !self.registry.insert(id, name, Owner::Local, 0) {
            return Err(RegisterError::Duplicate);
        }
        self.registered(id, Owner::Local);
        Ok(())
    }

    /// Unregisters a callback of this process (`cn_del_callback`); false if `id` was not one.
    pub fn del_callback(&mut self, id: CbId) -> bool {
        if self.registry.get(id).map(|e| e.owner) != Some(Owner::Local) {
            return false;
        }
        self.remove_entry(id);
        true
    }

    /// `cn_netlink_send_mult`: with `portid` and `group` both 0, the group of the id's owner; a non-zero group
    /// goes to its subscribers except `portid`; group 0 with a `portid` is a unicast. Returns the number of
    /// receivers.
    pub fn send(&mut self, hdr: CnMsgHdr, data: &[u8], portid: u32, group: u32) -> Result<usize, SendError> {
        let group =
            if portid == 0 && group == 0 { self.registry.get(hdr.id).ok_or(SendError::NoDevice)?.group } else { group };
        let d = wire::datagram(hdr, data, 0).map_err(|_| SendError::TooLong)?;
        if group == 0 {
            if portid == 0 {
                // The owner's group of an id whose idx is 0: group 0, which nobody can join.
                self.stats.esrch += 1;
                return Err(SendError::NoListeners);
            }
            self.transmits.push_back(Transmit { ports: vec![portid], datagram: d });
            return Ok(1);
        }
        match self.fanout(group, portid, d) {
            0 => {
                self.stats.esrch += 1;
                Err(SendError::NoListeners)
            }
            n => {
                self.stats.fanout += n as u64;
                Ok(n)
            }
        }
    }

    /// Counts a local delivery the driver had to drop (its callback's queue was full).
    pub fn note_local_drop(&mut self) {
        self.stats.dropped_local += 1;
    }

    /// Counts a receive overrun of the driver's socket (`ENOBUFS`).
    pub fn note_overrun(&mut self) {
        self.stats.overruns += 1;
    }

    /// Counts log lines the driver dropped (its log queue was full).
    pub fn note_log_dropped(&mut self, lines: u64) {
        self.stats.log_dropped += lines;
    }

    /// Counts a panic caught in a local callback.
    pub fn note_callback_panic(&mut self) {
        self.stats.callback_panics += 1;
    }

    /// Counts a client whose process the driver could not watch (see [`Action::Watch`]).
    pub fn note_unwatched(&mut self) {
        self.stats.unwatched += 1;
    }

    /// Counts a client whose process the driver watches.
    pub fn note_watched(&mut self) {
        self.stats.watched += 1;
    }

    /// Counters and gauges.
    pub fn stats(&self) -> BusCounters {
        let mut s = self.stats;
        s.ids = self.registry.len() as u64;
        s.subscriptions = self.subs.len() as u64;
        s.notify_requests = self.notify.len() as u64;
        s.routes = self.routes.len() as u64;
        s.clients = self.clients.len() as u64;
        s.users = self.ledger.users() as u64;
        s
    }

    /// What `uid` holds, counted against its limits.
    pub fn usage(&self, uid: u32) -> Usage {
        self.ledger.usage(uid)
    }

    /// The registered ids in registration order (the core's own id first).
    pub fn entries(&self) -> Vec<Entry> {
        self.registry.ordered().cloned().collect()
    }

    /// The entry for `id`.
    pub fn entry(&self, id: CbId) -> Option<&Entry> {
        self.registry.get(id)
    }

    /// The ports subscribed to `group`.
    pub fn subscribers(&self, group: u32) -> &[u32] {
        self.subs.members(group)
    }

    /// `/proc/net/connector` text.
    pub fn proc_text(&self) -> String {
        proc_text(self.registry.ordered())
    }

    fn unicast(&mut self, port: u32, hdr: CnMsgHdr, data: &[u8], nlmsg_pid: u32) {
        if let Ok(d) = wire::datagram(hdr, data, nlmsg_pid) {
            self.transmits.push_back(Transmit { ports: vec![port], datagram: d });
        }
    }

    /// Queues `datagram` to the subscribers of `group` but `exclude`; returns how many (the caller counts them).
    fn fanout(&mut self, group: u32, exclude: u32, datagram: Vec<u8>) -> usize {
        let ports: Vec<u32> = self.subs.members(group).iter().copied().filter(|&p| p != exclude).collect();
        let n = ports.len();
        if n > 0 {
            self.transmits.push_back(Transmit { ports, datagram });
        }
        n
    }

    /// Answers a request on the core's id: same seq, ack + 1.
    fn reply(&mut self, port: u32, req: CnMsgHdr, op: u16, errno: u32, body: &[u8]) {
        let data = crate::wire::Reply { op, errno, body }.to_bytes();
        let hdr = CnMsgHdr { id: CbId::CONNECTOR, ..req.reply() };
        self.unicast(port, hdr, &data, 0);
    }

    /// After an id is added: notifications with ack 0.
    fn registered(&mut self, id: CbId, owner: Owner) {
        self.actions.push_back(Action::Registered { id, owner });
        self.notify_change(id, 0);
    }

    fn notify_change(&mut self, id: CbId, ack: u32) {
        for g in self.notify.groups_for(id) {
            let hdr = CnMsgHdr { id, seq: 0, ack, len: 0, flags: 0 };
            if let Ok(d) = wire::datagram(hdr, &[], 0) {
                self.stats.notifications += self.fanout(g, 0, d) as u64;
            }
        }
    }

    /// Removes a registered id with all its bookkeeping, and notifies (ack 1).
    fn remove_entry(&mut self, id: CbId) {
        let Some(e) = self.registry.remove(id) else { return };
        for r in self.routes.remove_id(id) {
            self.ledger.release(r.uid, limits::Kind::Routes);
        }
        if let Owner::Remote(port) = e.owner {
            self.ledger.release(e.uid, limits::Kind::Ids);
            if let Some(c) = self.clients.get_mut(&port) {
                c.ids.remove(&id);
            }
            self.maybe_drop_client(port);
        }
        self.actions.push_back(Action::Unregistered { id, owner: e.owner });
        self.notify_change(id, 1);
    }
}

/// The first `cn_msg` of the first netlink message, validated as the kernel's `cn_rx_skb` does (spec §4.5).
pub fn first_cn_msg(datagram: &[u8]) -> Option<(CnMsgHdr, &[u8])> {
    let nl = NlMsg::new_checked(datagram).ok()?;
    let nlmsg_len = nl.nlmsg_len() as usize;
    let payload = &datagram[NLMSG_HDRLEN..nlmsg_len];
    if payload.len() > CONNECTOR_MAX_MSG_SIZE || nlmsg_len < NLMSG_HDRLEN + wire::CN_MSG_HDRLEN {
        return None;
    }
    let cn = CnMsg::new_checked(payload).ok()?;
    let hdr = cn.header();
    Some((hdr, &payload[wire::CN_MSG_HDRLEN..wire::CN_MSG_HDRLEN + hdr.len as usize]))
}
