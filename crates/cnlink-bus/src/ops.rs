//! The bus client's operations, sans IO: what each control op sends, what the bus's answers mean, LIST paging,
//! STATS naming, and whom a client trusts. [`crate::BusClient`] and `tokio::AsyncBusClient` only move the bytes.
//!
//! A control op is a [`ControlOp`]: its [`ControlOp::request`] is the data of a `cn_msg` to the bus's control id
//! `{0xffffffff, 0xffffffff}`, and [`ControlOp::on_reply`] reads the bus's answer (same `seq`, `ack + 1`), giving
//! the result or asking for one more request (the next LIST page). A driver runs one as:
//!
//! ```no_run
//! # use std::time::Duration;
//! # use cnlink::wire::CbId;
//! # use cnlink_bus::ops::{self, ControlOp};
//! # fn run(conn: &mut cnlink::Connector) -> Result<(), cnlink_bus::ClientError> {
//! let mut op = ops::list();
//! let entries = loop {
//!     let reply = conn.request(CbId::CONNECTOR, &op.request(), Duration::from_secs(2))?;
//!     if let Some(entries) = op.on_reply(&reply)? {
//!         break entries;
//!     }
//! };
//! # Ok(()) }
//! ```
//!
//! **Trust.** Any local user may bind the bus's port while the daemon is down, so a client accepts a datagram from
//! the bus's port only when its `SCM_CREDENTIALS` uid is a trusted one: by default root and the client's own uid
//! ([`default_bus_uids`]). Anything else is counted (`rejected`) and refused before reply matching, and the
//! request waiting fails with [`cnlink::Error::UntrustedPeer`], which names the uid and pid that answered.

use cnlink::socket::{NlAddr, Protocol};
use cnlink::wire::{CbId, CnMsgHdr, WireError};
use cnlink::{MatchRule, OwnedMsg, Trust};

use crate::core::BusCounters;
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
    /// Socket, timeout, trust or framing trouble ([`cnlink::Error::UntrustedPeer`] when someone other than the
    /// bus holds its port).
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

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        ClientError::Connector(cnlink::Error::Wire(e))
    }
}

/// The uids a client trusts to answer from the bus's port by default: root, and the client's own real and
/// effective uids.
pub fn default_bus_uids() -> Vec<u32> {
    let mut uids = vec![0, rustix::process::getuid().as_raw(), rustix::process::geteuid().as_raw()];
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// The trust setting of a client of the bus: the bus's port, from one of `uids`.
pub fn trust(uids: &[u32]) -> Trust {
    Trust::PeerWithUids(uids.to_vec())
}

/// How a client's connector is opened: protocol, peer, match rule and trust for the bus at `bus_port`.
pub fn connector_params(bus_port: u32, uids: &[u32]) -> (Protocol, NlAddr, MatchRule, Trust) {
    (Protocol::Usersock, NlAddr::port(bus_port), MatchRule::Documented, trust(uids))
}

/// One control operation: the requests it sends and how it reads the answers.
pub trait ControlOp {
    /// What the operation gives back.
    type Output;
    /// The data of the next request to the control id.
    fn request(&self) -> Vec<u8>;
    /// Reads the bus's answer to that request: the result, or `None` when another request is needed.
    fn on_reply(&mut self, reply: &OwnedMsg) -> Result<Option<Self::Output>, ClientError>;
}

/// Turns a message on the control id into its body, or the error it carries.
pub fn decode_reply(msg: &OwnedMsg) -> Result<&[u8], ClientError> {
    let r = Reply::parse(&msg.data)?;
    if r.errno != 0 {
        return Err(ClientError::Refused { op: r.op, errno: r.errno });
    }
    Ok(r.body)
}

/// The reply to a message sent to `to`: the bus answers a message it refuses (policy, limit) from its control
/// id, with the errno; anything else is the addressee's reply.
pub fn message_reply(to: CbId, reply: OwnedMsg) -> Result<OwnedMsg, ClientError> {
    if reply.hdr.id == CbId::CONNECTOR && to != CbId::CONNECTOR {
        decode_reply(&reply)?;
    }
    Ok(reply)
}

/// An op the bus answers with an errno only (REGISTER, UNREGISTER, JOIN, LEAVE, SEND, a notification request).
#[derive(Debug, Clone)]
pub struct AckOp {
    data: Vec<u8>,
}

impl ControlOp for AckOp {
    type Output = ();

    fn request(&self) -> Vec<u8> {
        self.data.clone()
    }

    fn on_reply(&mut self, reply: &OwnedMsg) -> Result<Option<()>, ClientError> {
        decode_reply(reply).map(|_| Some(()))
    }
}

/// Registers `id` under `name` for the client: the bus forwards that id's messages to it and relays the replies.
pub fn register(id: CbId, name: &str) -> AckOp {
    AckOp { data: BusOp::Register { id, name: name.into() }.to_bytes() }
}

/// Unregisters `id` (only its registrant, or root, may).
pub fn unregister(id: CbId) -> AckOp {
    AckOp { data: BusOp::Unregister { id }.to_bytes() }
}

/// Subscribes the client to `group` (any number but 0).
pub fn join(group: u32) -> AckOp {
    AckOp { data: BusOp::Join { group }.to_bytes() }
}

/// Unsubscribes the client from `group`.
pub fn leave(group: u32) -> AckOp {
    AckOp { data: BusOp::Leave { group }.to_bytes() }
}

/// Sends a message for `id` to `group` (0: the group of the id's owner), like `cn_netlink_send`.
pub fn send_group(group: u32, id: CbId, data: &[u8]) -> Result<AckOp, WireError> {
    Ok(AckOp { data: bw::send_op(group, CnMsgHdr { id, ..Default::default() }, data)? })
}

/// A historical notification request (`cn_ctl_msg`), byte for byte as a 2.6.x client sent it.
pub fn notify(req: &CtlMsg) -> AckOp {
    AckOp { data: req.to_bytes() }
}

/// LIST, page by page: every registered id, in registration order.
#[derive(Debug, Clone, Default)]
pub struct ListOp {
    entries: Vec<ListEntry>,
}

/// Every registered id (the `/proc/net/connector` equivalent), asked for page by page.
pub fn list() -> ListOp {
    ListOp::default()
}

impl ControlOp for ListOp {
    type Output = Vec<ListEntry>;

    fn request(&self) -> Vec<u8> {
        BusOp::List { start: self.entries.len() as u32 }.to_bytes()
    }

    fn on_reply(&mut self, reply: &OwnedMsg) -> Result<Option<Vec<ListEntry>>, ClientError> {
        let page = ListPage::parse(decode_reply(reply)?)?;
        let done = page.entries.is_empty() || self.entries.len() + page.entries.len() >= page.total as usize;
        self.entries.extend(page.entries);
        Ok(done.then(|| std::mem::take(&mut self.entries)))
    }
}

/// STATS: the daemon's counters, each named as in [`BusCounters::NAMES`] (`counterN` for one this client does not
/// know).
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsOp;

/// The daemon's counters.
pub fn stats() -> StatsOp {
    StatsOp
}

impl ControlOp for StatsOp {
    type Output = Vec<(String, u64)>;

    fn request(&self) -> Vec<u8> {
        BusOp::Stats.to_bytes()
    }

    fn on_reply(&mut self, reply: &OwnedMsg) -> Result<Option<Vec<(String, u64)>>, ClientError> {
        let named = bw::parse_stats(decode_reply(reply)?)?
            .into_iter()
            .enumerate()
            .map(|(i, v)| (BusCounters::NAMES.get(i).map_or_else(|| format!("counter{i}"), |s| s.to_string()), v))
            .collect();
        Ok(Some(named))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::wire::{BUS_OP_LIST, BUS_OP_REGISTER, BUS_OP_STATS};

    /// The bus's answer to a control request: data `body` after a reply header for `op` with `errno`.
    fn answer(op: u16, errno: u32, body: &[u8]) -> OwnedMsg {
        let data = Reply { op, errno, body }.to_bytes();
        let hdr = CnMsgHdr { id: CbId::CONNECTOR, ..Default::default() };
        OwnedMsg {
            nl: Default::default(),
            hdr,
            datagram: Arc::from(cnlink::wire::datagram(hdr, &data, 0).unwrap()),
            data,
            from: NlAddr::port(1),
            creds: None,
        }
    }

    fn entry(i: u32) -> ListEntry {
        ListEntry { id: CbId::new(i, i), group: i, port: 7, uid: 0, name: format!("id{i}") }
    }

    #[test]
    fn list_pages_until_the_total() {
        let mut op = list();
        assert_eq!(op.request(), BusOp::List { start: 0 }.to_bytes());
        let first = ListPage { total: 3, entries: vec![entry(1), entry(2)] }.to_bytes();
        assert_eq!(op.on_reply(&answer(BUS_OP_LIST, 0, &first)).unwrap(), None, "one more page");
        assert_eq!(op.request(), BusOp::List { start: 2 }.to_bytes());
        let last = ListPage { total: 3, entries: vec![entry(3)] }.to_bytes();
        let all = op.on_reply(&answer(BUS_OP_LIST, 0, &last)).unwrap().unwrap();
        assert_eq!(all, vec![entry(1), entry(2), entry(3)]);
        // An empty page ends the listing even if the total said more (ids went away meanwhile).
        let mut op = list();
        let empty = ListPage { total: 9, entries: vec![] }.to_bytes();
        assert_eq!(op.on_reply(&answer(BUS_OP_LIST, 0, &empty)).unwrap(), Some(vec![]));
    }

    #[test]
    fn answers_are_typed() {
        let mut op = register(CbId::new(14, 0x456), "echo");
        assert_eq!(op.request(), BusOp::Register { id: CbId::new(14, 0x456), name: "echo".into() }.to_bytes());
        assert_eq!(op.on_reply(&answer(BUS_OP_REGISTER, 0, &[])).unwrap(), Some(()));
        let err = op.on_reply(&answer(BUS_OP_REGISTER, libc::EPERM as u32, &[])).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EPERM as u32));
        let mut bad = answer(BUS_OP_REGISTER, 0, &[]);
        bad.data[0] ^= 0xff;
        assert!(matches!(op.on_reply(&bad), Err(ClientError::BadReply(CtlError::BadMagic(_)))));
        let named = stats().on_reply(&answer(BUS_OP_STATS, 0, &bw::stats_bytes(&[5, 6]))).unwrap().unwrap();
        assert_eq!(named, vec![(BusCounters::NAMES[0].to_string(), 5), (BusCounters::NAMES[1].to_string(), 6)]);
        let many = vec![1; BusCounters::NAMES.len() + 1];
        let named = stats().on_reply(&answer(BUS_OP_STATS, 0, &bw::stats_bytes(&many))).unwrap().unwrap();
        assert_eq!(
            named.last().unwrap().0,
            format!("counter{}", BusCounters::NAMES.len()),
            "an unknown counter is kept"
        );
    }

    #[test]
    fn a_refused_message_comes_back_from_the_control_id() {
        let refused = answer(bw::BUS_OP_MESSAGE, libc::EDQUOT as u32, &[]);
        let err = message_reply(CbId::new(14, 0x456), refused.clone()).unwrap_err();
        assert_eq!(err.errno(), Some(libc::EDQUOT as u32));
        assert!(message_reply(CbId::CONNECTOR, refused).is_ok(), "to the control id, it is the reply itself");
    }

    #[test]
    fn the_default_trust_is_root_and_ourselves() {
        let uids = default_bus_uids();
        assert!(uids.contains(&0) && uids.contains(&rustix::process::getuid().as_raw()));
        assert_eq!(trust(&[7]), Trust::PeerWithUids(vec![7]));
    }
}
