//! The connector core as a sans-IO state machine: no sockets, no threads, no clock.
//!
//! Datagrams go in with [`Core::handle`] (with the time and the sender's port and credentials); datagrams to send
//! come out of [`Core::poll_transmit`], things for the driver to do (run a local callback, watch a client's
//! process) out of [`Core::poll_event`], and [`Core::poll_timeout`] says when [`Core::handle_timeout`] is due.
//! The kernel-side API is here too: [`Core::add_callback`], [`Core::del_callback`], [`Core::send`].
//!
//! Semantics follow the kernel connector (spec §3, §4, §11): a registry of unique ids whose group is their `idx`,
//! exact-id routing, `send` with group 0 meaning "the group of the id's owner" (`ENODEV` without one, `ESRCH` when
//! nobody listens), silent drops of malformed or unroutable input, and the historical notification protocol
//! (§6) on the core's own id `{0xffffffff, 0xffffffff}`, bounded per user (see [`Limits`]).

mod control;
mod limits;
mod notify;
mod registry;
mod routing;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, NlMsg, CONNECTOR_MAX_MSG_SIZE, NLMSG_HDRLEN};
use cnlink::Credentials;

pub use limits::{Limits, Usage};
pub use registry::{proc_text, Entry, Owner};

use crate::policy::Policy;
use limits::{Kind, Ledger};
use notify::NotifyTable;
use registry::Registry;
use routing::{Routes, Subscriptions};

/// The uid counted for a sender whose credentials are unknown.
pub const UNKNOWN_UID: u32 = u32::MAX;

/// Most events kept waiting for the driver; beyond it, deliveries are dropped and counted.
const MAX_EVENTS: usize = 65536;

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
    /// The positive errno answered.
    pub errno: u32,
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Run the local callback for `hdr.id` with this message.
    Deliver(Delivery),
    /// A client now holds state: watch process `pid` and call [`Core::client_gone`] when it exits.
    Watch {
        /// The client's port.
        port: u32,
        /// Its process id, from its credentials.
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
    /// A request was refused with an errno: policy or ownership (`EPERM`), limits (`EDQUOT`, `E2BIG`), no such
    /// id or listener (`ENOENT`, `ENODEV`, `ESRCH`), or malformed control.
    Denied(Denial),
}

/// Why [`Core::add_callback`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The id is already registered (the kernel answers `-EINVAL`).
    #[error("id already registered")]
    Duplicate,
    /// The policy does not let this user register this id.
    #[error("not permitted by the bus policy")]
    Denied,
    /// The user holds as many ids as allowed.
    #[error("per-user limit reached")]
    Limit,
}

impl RegisterError {
    /// The positive errno on the wire.
    pub fn errno(self) -> u32 {
        (match self {
            RegisterError::Duplicate => libc::EINVAL,
            RegisterError::Denied => libc::EPERM,
            RegisterError::Limit => libc::EDQUOT,
        }) as u32
    }
}

/// Why [`Core::send`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Group 0 was asked for and no id equal to the message's is registered (`ENODEV`).
    #[error("no callback registered for this id")]
    NoDevice,
    /// Nobody is subscribed to the group (`ESRCH`).
    #[error("nobody listens on the group")]
    NoListeners,
    /// More than 65535 data bytes.
    #[error("message too long")]
    TooLong,
}

impl SendError {
    /// The positive errno on the wire.
    pub fn errno(self) -> u32 {
        (match self {
            SendError::NoDevice => libc::ENODEV,
            SendError::NoListeners => libc::ESRCH,
            SendError::TooLong => libc::EMSGSIZE,
        }) as u32
    }
}

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters of everything the core did, dropped or refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Stats {
            /// Counter names, in the order of [`Stats::values`] and of the STATS reply.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Counter values, in the order of [`Stats::NAMES`].
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name),*]
            }
        }
    };
}

stats! {
    /// Datagrams handled.
    received,
    /// Datagrams dropped as malformed (short, lying lengths, oversize).
    malformed,
    /// Control requests that did not decode (answered `EINVAL`/`EOPNOTSUPP`).
    bad_control,
    /// Control requests handled.
    control,
    /// Messages to ids nobody registered (dropped, as the kernel does).
    unroutable,
    /// Requests refused as not permitted (`EPERM`: the policy, or unregistering another user's id).
    denied,
    /// Requests refused by a per-user limit.
    over_limit,
    /// Notification requests that repeated a stored one.
    notify_dedup,
    /// Messages handed to local callbacks.
    delivered_local,
    /// Local deliveries dropped: the event queue or the callback's queue was full, or the callback was removed.
    dropped_local,
    /// Messages forwarded to remote owners.
    forwarded,
    /// Replies routed back to requesters.
    replies_routed,
    /// Reply routes replaced by a request with the same id, seq and ack.
    route_collisions,
    /// Reply routes that expired unanswered.
    routes_expired,
    /// Messages queued to group subscribers (one per subscriber).
    fanout,
    /// Group sends nobody listened to (`ESRCH`).
    esrch,
    /// Notifications queued (one per subscriber).
    notifications,
    /// Sends the kernel refused with a full receiver (`EAGAIN`/`ENOBUFS`).
    dropped_full,
    /// Clients found gone and cleaned up.
    clients_gone,
    /// Registered ids now (gauge).
    ids,
    /// Subscriptions now (gauge).
    subscriptions,
    /// Stored notification requests now (gauge).
    notify_requests,
    /// Reply routes waiting now (gauge).
    routes,
    /// Clients holding state now (gauge).
    clients,
    /// Users holding anything now (gauge).
    users,
}

/// A client socket that holds state.
#[derive(Debug)]
struct Client {
    uid: u32,
    ids: BTreeSet<CbId>,
    groups: BTreeSet<u32>,
    /// Groups of `groups` this client is in only because a notification request of its subscribed it: removing
    /// its last request for such a group leaves the group too.
    notify_groups: BTreeSet<u32>,
    notify: usize,
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
    events: VecDeque<Event>,
    stats: Stats,
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
            events: VecDeque::new(),
            stats: Stats::default(),
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
            self.control(now, from, hdr, data);
        } else {
            self.data_msg(now, from, hdr, data);
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.routes.next_deadline()
    }

    /// Forgets reply routes whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        for r in self.routes.expire(now) {
            self.ledger.release(r.uid, Kind::Routes);
            self.stats.routes_expired += 1;
        }
    }

    /// Registers a callback in this process (`cn_add_callback`). Its messages come out as [`Event::Deliver`].
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
            n => Ok(n),
        }
    }

    /// Cleans up after a client whose process exited or whose socket is closed: unregisters its ids (with
    /// notifications), drops its subscriptions, requests and routes.
    pub fn client_gone(&mut self, port: u32) {
        self.routes.remove_requester(port).into_iter().for_each(|r| self.ledger.release(r.uid, Kind::Routes));
        let Some(client) = self.clients.get(&port) else { return };
        let (ids, groups) = (client.ids.clone(), client.groups.clone());
        self.stats.clients_gone += 1;
        // Its requests and subscriptions first, so that the notifications for its ids do not go to itself.
        for s in self.notify.remove_port(port) {
            self.ledger.release(s.uid, Kind::Notify);
        }
        if let Some(c) = self.clients.get_mut(&port) {
            c.notify = 0;
        }
        for g in groups {
            self.leave(port, g);
        }
        for id in ids {
            self.remove_entry(id);
        }
        if let Some(c) = self.clients.remove(&port) {
            self.ledger.release(c.uid, Kind::Clients);
            self.events.push_back(Event::Unwatch { port });
        }
    }

    /// Reports a failed send to `port`: `ECONNREFUSED` means its socket is closed (the client is cleaned up);
    /// other errors are counted as drops.
    pub fn send_failed(&mut self, port: u32, errno: i32) {
        if errno == libc::ECONNREFUSED {
            self.client_gone(port);
        } else {
            self.stats.dropped_full += 1;
        }
    }

    /// Counts a local delivery the driver had to drop (its callback's queue was full).
    pub fn note_local_drop(&mut self) {
        self.stats.dropped_local += 1;
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
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
        self.registry.ordered().into_iter().cloned().collect()
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

    /// A port seen before under another uid was closed and reused: forget the old client. Without credentials
    /// the sender counts as [`UNKNOWN_UID`], another user, so that everything a client holds is counted under one
    /// uid and given back to that uid.
    fn check_identity(&mut self, from: &Sender) {
        if self.clients.get(&from.port).is_some_and(|c| c.uid != from.uid()) {
            self.client_gone(from.port);
        }
    }

    fn data_msg(&mut self, now: Instant, from: Sender, hdr: CnMsgHdr, data: &[u8]) {
        let Some(entry) = self.registry.get(hdr.id) else {
            self.stats.unroutable += 1;
            return;
        };
        let owner = entry.owner;
        if owner == Owner::Remote(from.port) {
            return self.owner_msg(from, hdr, data);
        }
        let uid = from.uid();
        if !self.policy.may_send(uid, hdr.id) {
            self.stats.denied += 1;
            return self.deny(from, hdr, crate::wire::BUS_OP_MESSAGE, Some(hdr.id), libc::EPERM as u32);
        }
        match owner {
            Owner::Remote(port) => {
                if !self.ledger.has_room(&self.policy.limits, uid, Kind::Routes) {
                    self.stats.over_limit += 1;
                    return self.deny(from, hdr, crate::wire::BUS_OP_MESSAGE, Some(hdr.id), libc::EDQUOT as u32);
                }
                let key = (hdr.id, hdr.seq, hdr.ack.wrapping_add(1));
                if let Some(old) = self.routes.insert(key, from.port, uid, now + self.route_timeout) {
                    self.ledger.release(old.uid, Kind::Routes);
                    self.stats.route_collisions += 1;
                }
                self.ledger.take(uid, Kind::Routes);
                self.stats.forwarded += 1;
                self.unicast(port, hdr, data, from.port);
            }
            Owner::Local => {
                if self.events.len() >= MAX_EVENTS {
                    self.stats.dropped_local += 1;
                    return;
                }
                self.stats.delivered_local += 1;
                self.events.push_back(Event::Deliver(Delivery { hdr, data: data.to_vec(), from }));
            }
            Owner::Core => {}
        }
    }

    /// A message from the owner of its id: the reply to a forwarded request, or a send to the id's group.
    fn owner_msg(&mut self, from: Sender, hdr: CnMsgHdr, data: &[u8]) {
        if let Some(route) = self.routes.take(&(hdr.id, hdr.seq, hdr.ack)) {
            self.ledger.release(route.uid, Kind::Routes);
            self.stats.replies_routed += 1;
            return self.unicast(route.requester, hdr, data, 0);
        }
        if let Ok(d) = wire::datagram(hdr, data, 0) {
            if self.fanout(hdr.id.idx, from.port, d) == 0 {
                self.stats.esrch += 1;
            }
        }
    }

    fn unicast(&mut self, port: u32, hdr: CnMsgHdr, data: &[u8], nlmsg_pid: u32) {
        if let Ok(d) = wire::datagram(hdr, data, nlmsg_pid) {
            self.transmits.push_back(Transmit { ports: vec![port], datagram: d });
        }
    }

    /// Queues `datagram` to the subscribers of `group` but `exclude`; returns how many.
    fn fanout(&mut self, group: u32, exclude: u32, datagram: Vec<u8>) -> usize {
        let ports: Vec<u32> = self.subs.members(group).iter().copied().filter(|&p| p != exclude).collect();
        let n = ports.len();
        if n > 0 {
            self.stats.fanout += n as u64;
            self.transmits.push_back(Transmit { ports, datagram });
        }
        n
    }

    fn deny(&mut self, from: Sender, hdr: CnMsgHdr, op: u16, id: Option<CbId>, errno: u32) {
        self.events.push_back(Event::Denied(Denial { from, op, id, errno }));
        let body = id.map(|id| [id.idx.to_ne_bytes(), id.val.to_ne_bytes()].concat()).unwrap_or_default();
        self.reply(from.port, hdr, op, errno, &body);
    }

    /// Answers a request on the core's id: same seq, ack + 1.
    fn reply(&mut self, port: u32, req: CnMsgHdr, op: u16, errno: u32, body: &[u8]) {
        let data = crate::wire::Reply { op, errno, body }.to_bytes();
        let hdr = CnMsgHdr { id: CbId::CONNECTOR, ..req.reply() };
        self.unicast(port, hdr, &data, 0);
    }

    /// After an id is added: notifications with ack 0.
    fn registered(&mut self, id: CbId, owner: Owner) {
        self.events.push_back(Event::Registered { id, owner });
        self.notify_change(id, 0);
    }

    fn notify_change(&mut self, id: CbId, ack: u32) {
        for g in self.notify.groups_for(id) {
            let hdr = CnMsgHdr { id, seq: 0, ack, len: 0, flags: 0 };
            if let Ok(d) = wire::datagram(hdr, &[], 0) {
                let n = self.fanout(g, 0, d);
                self.stats.fanout -= n as u64;
                self.stats.notifications += n as u64;
            }
        }
    }

    /// Removes a registered id with all its bookkeeping, and notifies (ack 1).
    fn remove_entry(&mut self, id: CbId) {
        let Some(e) = self.registry.remove(id) else { return };
        for r in self.routes.remove_id(id) {
            self.ledger.release(r.uid, Kind::Routes);
        }
        if let Owner::Remote(port) = e.owner {
            self.ledger.release(e.uid, Kind::Ids);
            if let Some(c) = self.clients.get_mut(&port) {
                c.ids.remove(&id);
            }
            self.maybe_drop_client(port);
        }
        self.events.push_back(Event::Unregistered { id, owner: e.owner });
        self.notify_change(id, 1);
    }

    /// Makes sure `from` has a client record (counted against its user's client limit).
    fn ensure_client(&mut self, from: Sender) -> Result<(), u32> {
        if self.clients.contains_key(&from.port) {
            return Ok(());
        }
        let uid = from.uid();
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Clients) {
            return Err(libc::EDQUOT as u32);
        }
        self.ledger.take(uid, Kind::Clients);
        self.clients.insert(
            from.port,
            Client { uid, ids: BTreeSet::new(), groups: BTreeSet::new(), notify_groups: BTreeSet::new(), notify: 0 },
        );
        if let Some(c) = from.creds {
            self.events.push_back(Event::Watch { port: from.port, pid: c.pid });
        }
        Ok(())
    }

    /// Drops a client record that holds nothing.
    fn maybe_drop_client(&mut self, port: u32) {
        let Some(c) = self.clients.get(&port) else { return };
        if c.ids.is_empty() && c.groups.is_empty() && c.notify == 0 {
            self.ledger.release(c.uid, Kind::Clients);
            self.clients.remove(&port);
            self.events.push_back(Event::Unwatch { port });
        }
    }

    fn leave(&mut self, port: u32, group: u32) -> bool {
        if !self.subs.leave(group, port) {
            return false;
        }
        if let Some(c) = self.clients.get_mut(&port) {
            c.groups.remove(&group);
            c.notify_groups.remove(&group);
            let uid = c.uid;
            self.ledger.release(uid, Kind::Subscriptions);
        }
        self.maybe_drop_client(port);
        true
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
