//! The bus's control messages: the historical `cn_ctl_msg` notification request, the bus's own control ops, and
//! the replies. No IO; every decoder checks lengths and returns a typed error, never panics.
//!
//! All control traffic is an ordinary `cn_msg` to the core's own id `{0xffffffff, 0xffffffff}`. Its data is one of:
//!
//! ```text
//! historical notification request (cn_ctl_msg, 2.6.14-2.6.32), byte for byte:
//!   0  u32 idx_notify_num        number of idx ranges
//!   4  u32 val_notify_num        number of val ranges
//!   8  u32 group                 group to notify; 0 removes the equal request
//!  12  u32 len                   (idx_notify_num + val_notify_num) * 8
//!  16      idx ranges, then val ranges: { u32 first; u32 range; }   half-open [first, first + range)
//!
//! bus op (first u32 is BUS_MAGIC, which no cn_ctl_msg the bus accepts can start with: the bus takes at most
//! 16384 bytes of data, so idx_notify_num is at most 2043):
//!   0  u32 magic = BUS_MAGIC
//!   4  u16 op                    BUS_OP_*
//!   6  u16 reserved = 0
//!   8      body (per op, see docs/bus-protocol.md)
//!
//! reply (bus -> requester, unicast, id {-1,-1}, same seq, ack = request ack + 1):
//!   0  u32 magic = BUS_MAGIC
//!   4  u16 op                    the request's op (0 for a cn_ctl_msg request)
//!   6  u16 reserved = 0
//!   8  u32 errno                 0 on success, else a positive errno
//!  12      body (LIST and STATS only)
//! ```

use cnlink::wire::{CbId, CnMsg, CnMsgHdr, WireError, CN_MSG_HDRLEN};

/// First word of every bus op and reply: the bytes `"CBUS"` on a little-endian machine.
pub const BUS_MAGIC: u32 = 0x5355_4243;
/// Size of the op header (magic, op, reserved).
pub const OP_HDRLEN: usize = 8;
/// Size of the reply header (magic, op, reserved, errno).
pub const REPLY_HDRLEN: usize = 12;
/// Size of the `cn_ctl_msg` header.
pub const CTL_HDRLEN: usize = 16;
/// Size of one `cn_notify_req`.
pub const NOTIFY_REQ_LEN: usize = 8;
/// Name field of a registration, NUL included (`CN_CBQ_NAMELEN`).
pub const NAME_LEN: usize = 32;
/// Size of one LIST entry.
pub const LIST_ENTRY_LEN: usize = 20 + NAME_LEN;
/// LIST entries per reply page.
pub const LIST_PAGE: usize = 256;

/// Op: register an id for the sender.
pub const BUS_OP_REGISTER: u16 = 1;
/// Op: unregister an id.
pub const BUS_OP_UNREGISTER: u16 = 2;
/// Op: subscribe the sender to a group.
pub const BUS_OP_JOIN: u16 = 3;
/// Op: unsubscribe the sender from a group.
pub const BUS_OP_LEAVE: u16 = 4;
/// Op: send a `cn_msg` to a group (`cn_netlink_send`).
pub const BUS_OP_SEND: u16 = 5;
/// Op: list registered ids (`/proc/net/connector`).
pub const BUS_OP_LIST: u16 = 6;
/// Op: the daemon's counters.
pub const BUS_OP_STATS: u16 = 7;
/// Reply op for an error about a data message to a registered id (policy denial, limit); its body is the id.
pub const BUS_OP_MESSAGE: u16 = 0x8000;

/// Why control bytes could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// Lengths or the basic framing are wrong.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The op number is not one the bus knows.
    #[error("unknown bus op {0}")]
    UnknownOp(u16),
    /// A reserved field is not zero.
    #[error("reserved field is {0}, not 0")]
    Reserved(u16),
    /// The first word is not [`BUS_MAGIC`] where a bus op or reply must be.
    #[error("not a bus message (magic {0:#x})")]
    BadMagic(u32),
}

fn need(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated { needed, got: buf.len() })
    } else {
        Ok(())
    }
}

/// Reads a native-endian u32 at `at`; callers checked the length.
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(w)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// One range of a notification request (`struct cn_notify_req`): `first <= x < first + range`.
#[doc(alias = "cn_notify_req")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifyRange {
    /// First value in the range.
    pub first: u32,
    /// Number of values in the range.
    pub range: u32,
}

impl NotifyRange {
    /// Whether `x` is in the half-open range (computed without overflow).
    pub fn contains(&self, x: u32) -> bool {
        x >= self.first && (x as u64) < self.first as u64 + self.range as u64
    }
}

/// A historical notification request (`struct cn_ctl_msg` and its ranges).
#[doc(alias = "cn_ctl_msg")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtlMsg {
    /// Group to notify; 0 removes the equal requests.
    pub group: u32,
    /// idx ranges.
    pub idx: Vec<NotifyRange>,
    /// val ranges.
    pub val: Vec<NotifyRange>,
}

impl CtlMsg {
    /// Parses `data` (the whole `cn_msg` data) with the original validation: `len >= 16`,
    /// `len == 16 + (idx_num + val_num) * 8` and `ctl.len + 16 == len`.
    pub fn parse(data: &[u8]) -> Result<CtlMsg, CtlError> {
        need(data, CTL_HDRLEN)?;
        let (idx_n, val_n) = (u32_at(data, 0) as usize, u32_at(data, 4) as usize);
        let expected = CTL_HDRLEN.saturating_add(idx_n.saturating_add(val_n).saturating_mul(NOTIFY_REQ_LEN));
        if data.len() != expected {
            return Err(WireError::LengthMismatch { claimed: data.len(), expected }.into());
        }
        let ctl_len = u32_at(data, 12) as usize;
        if ctl_len + CTL_HDRLEN != data.len() {
            return Err(WireError::LengthMismatch { claimed: ctl_len + CTL_HDRLEN, expected: data.len() }.into());
        }
        let range = |i: usize| {
            let at = CTL_HDRLEN + i * NOTIFY_REQ_LEN;
            NotifyRange { first: u32_at(data, at), range: u32_at(data, at + 4) }
        };
        Ok(CtlMsg {
            group: u32_at(data, 8),
            idx: (0..idx_n).map(range).collect(),
            val: (idx_n..idx_n + val_n).map(range).collect(),
        })
    }

    /// The encoded size.
    pub fn buffer_len(&self) -> usize {
        CTL_HDRLEN + (self.idx.len() + self.val.len()) * NOTIFY_REQ_LEN
    }

    /// Encodes to bytes, exactly as the 2.6.x clients built it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.buffer_len());
        for w in [self.idx.len() as u32, self.val.len() as u32, self.group, (self.buffer_len() - CTL_HDRLEN) as u32] {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        for r in self.idx.iter().chain(&self.val) {
            v.extend_from_slice(&r.first.to_ne_bytes());
            v.extend_from_slice(&r.range.to_ne_bytes());
        }
        v
    }

    /// Whether `id` falls in one of the idx ranges and in one of the val ranges (each list scanned from its start;
    /// the original's range-cursor bug is not reproduced).
    pub fn matches(&self, id: CbId) -> bool {
        self.idx.iter().any(|r| r.contains(id.idx)) && self.val.iter().any(|r| r.contains(id.val))
    }

    /// The original's equality for removal: same ranges in the same order (the group is not compared).
    pub fn same_ranges(&self, other: &CtlMsg) -> bool {
        self.idx == other.idx && self.val == other.val
    }
}

/// A bus control op, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusOp<'a> {
    /// Register `id` under `name` for the sender.
    Register {
        /// The id.
        id: CbId,
        /// Its name, at most 31 bytes.
        name: String,
    },
    /// Unregister `id`.
    Unregister {
        /// The id.
        id: CbId,
    },
    /// Subscribe the sender to `group`.
    Join {
        /// Any group number but 0.
        group: u32,
    },
    /// Unsubscribe the sender from `group`.
    Leave {
        /// The group.
        group: u32,
    },
    /// Send `msg` to `group` (0: the group of the id's owner).
    Send {
        /// The group.
        group: u32,
        /// The message to deliver.
        msg: CnMsg<&'a [u8]>,
    },
    /// List registered ids from entry `start`.
    List {
        /// First entry wanted.
        start: u32,
    },
    /// The daemon's counters.
    Stats,
}

/// What a control `cn_msg` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// A historical notification request.
    Notify(CtlMsg),
    /// A bus op.
    Op(BusOp<'a>),
}

fn id_at(b: &[u8], at: usize) -> CbId {
    CbId::new(u32_at(b, at), u32_at(b, at + 4))
}

/// Reads a NUL-padded name: up to the first NUL, cut to 31 bytes, invalid UTF-8 replaced.
pub fn name_from(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()).min(NAME_LEN - 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Writes `name` as a NUL-padded 32-byte field (cut to 31 bytes).
pub fn name_field(name: &str) -> [u8; NAME_LEN] {
    let mut f = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN - 1);
    f[..n].copy_from_slice(&name.as_bytes()[..n]);
    f
}

impl<'a> Request<'a> {
    /// Decodes the data of a `cn_msg` sent to the control id. The op is returned with errors where known, so that
    /// the reply can name it.
    pub fn parse(data: &'a [u8]) -> Result<Request<'a>, (u16, CtlError)> {
        if data.len() < 4 || u32_at(data, 0) != BUS_MAGIC {
            return CtlMsg::parse(data).map(Request::Notify).map_err(|e| (0, e));
        }
        need(data, OP_HDRLEN).map_err(|e| (0, e.into()))?;
        let op = u16_at(data, 4);
        let reserved = u16_at(data, 6);
        BusOp::parse_body(op, reserved, &data[OP_HDRLEN..]).map(Request::Op).map_err(|e| (op, e))
    }
}

impl<'a> BusOp<'a> {
    fn parse_body(op: u16, reserved: u16, b: &'a [u8]) -> Result<BusOp<'a>, CtlError> {
        if !(BUS_OP_REGISTER..=BUS_OP_STATS).contains(&op) {
            return Err(CtlError::UnknownOp(op));
        }
        if reserved != 0 {
            return Err(CtlError::Reserved(reserved));
        }
        let exact = |n: usize| -> Result<(), CtlError> {
            if b.len() != n {
                return Err(WireError::LengthMismatch { claimed: b.len(), expected: n }.into());
            }
            Ok(())
        };
        Ok(match op {
            BUS_OP_REGISTER => {
                if b.len() != 8 {
                    exact(8 + NAME_LEN)?;
                }
                let name = if b.len() > 8 { name_from(&b[8..]) } else { String::new() };
                BusOp::Register { id: id_at(b, 0), name }
            }
            BUS_OP_UNREGISTER => {
                exact(8)?;
                BusOp::Unregister { id: id_at(b, 0) }
            }
            BUS_OP_JOIN | BUS_OP_LEAVE => {
                exact(4)?;
                let group = u32_at(b, 0);
                if op == BUS_OP_JOIN {
                    BusOp::Join { group }
                } else {
                    BusOp::Leave { group }
                }
            }
            BUS_OP_SEND => {
                need(b, 4)?;
                let msg = CnMsg::new_checked(&b[4..])?;
                exact(4 + msg.as_bytes().len())?;
                BusOp::Send { group: u32_at(b, 0), msg }
            }
            BUS_OP_LIST => {
                if b.is_empty() {
                    BusOp::List { start: 0 }
                } else {
                    exact(4)?;
                    BusOp::List { start: u32_at(b, 0) }
                }
            }
            _ => {
                exact(0)?;
                BusOp::Stats
            }
        })
    }

    /// The op number.
    pub fn code(&self) -> u16 {
        match self {
            BusOp::Register { .. } => BUS_OP_REGISTER,
            BusOp::Unregister { .. } => BUS_OP_UNREGISTER,
            BusOp::Join { .. } => BUS_OP_JOIN,
            BusOp::Leave { .. } => BUS_OP_LEAVE,
            BusOp::Send { .. } => BUS_OP_SEND,
            BusOp::List { .. } => BUS_OP_LIST,
            BusOp::Stats => BUS_OP_STATS,
        }
    }

    /// Encodes the op (header and body) as `cn_msg` data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = op_header(self.code());
        match self {
            BusOp::Register { id, name } => {
                put_id(&mut v, *id);
                v.extend_from_slice(&name_field(name));
            }
            BusOp::Unregister { id } => put_id(&mut v, *id),
            BusOp::Join { group } | BusOp::Leave { group } | BusOp::List { start: group } => {
                v.extend_from_slice(&group.to_ne_bytes())
            }
            BusOp::Send { group, msg } => {
                v.extend_from_slice(&group.to_ne_bytes());
                v.extend_from_slice(msg.as_bytes());
            }
            BusOp::Stats => {}
        }
        v
    }
}

/// The op header for `op`.
pub fn op_header(op: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&BUS_MAGIC.to_ne_bytes());
    v.extend_from_slice(&op.to_ne_bytes());
    v.extend_from_slice(&0u16.to_ne_bytes());
    v
}

fn put_id(v: &mut Vec<u8>, id: CbId) {
    v.extend_from_slice(&id.idx.to_ne_bytes());
    v.extend_from_slice(&id.val.to_ne_bytes());
}

/// Encodes the data of a [`BusOp::Send`] for `hdr` and `data` (`hdr.len` is taken from `data`).
pub fn send_op(group: u32, mut hdr: CnMsgHdr, data: &[u8]) -> Result<Vec<u8>, WireError> {
    hdr.len = u16::try_from(data.len()).map_err(|_| WireError::TooLong { len: data.len(), max: u16::MAX as usize })?;
    let mut v = op_header(BUS_OP_SEND);
    v.extend_from_slice(&group.to_ne_bytes());
    let at = v.len();
    v.resize(at + CN_MSG_HDRLEN, 0);
    hdr.emit(&mut v[at..])?;
    v.extend_from_slice(data);
    Ok(v)
}

/// A reply from the bus to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request's op (0 for a `cn_ctl_msg`).
    pub op: u16,
    /// 0 on success, else a positive errno.
    pub errno: u32,
    /// The op's result (LIST and STATS).
    pub body: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Decodes reply data.
    pub fn parse(data: &'a [u8]) -> Result<Reply<'a>, CtlError> {
        need(data, REPLY_HDRLEN)?;
        let magic = u32_at(data, 0);
        if magic != BUS_MAGIC {
            return Err(CtlError::BadMagic(magic));
        }
        Ok(Reply { op: u16_at(data, 4), errno: u32_at(data, 8), body: &data[REPLY_HDRLEN..] })
    }

    /// Encodes reply data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = op_header(self.op);
        v.extend_from_slice(&self.errno.to_ne_bytes());
        v.extend_from_slice(self.body);
        v
    }
}

/// One registered id as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The id.
    pub id: CbId,
    /// Its group (`idx`).
    pub group: u32,
    /// The owner's port id; 0 for a callback inside the daemon.
    pub port: u32,
    /// The owner's uid (0 inside the daemon).
    pub uid: u32,
    /// The name.
    pub name: String,
}

/// A LIST reply body: total number of entries, then a page of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// How many ids are registered in all.
    pub total: u32,
    /// This page's entries.
    pub entries: Vec<ListEntry>,
}

impl ListPage {
    /// Encodes: `u32 total, u32 count`, then `count` entries of `idx, val, group, port, uid, name[32]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + self.entries.len() * LIST_ENTRY_LEN);
        v.extend_from_slice(&self.total.to_ne_bytes());
        v.extend_from_slice(&(self.entries.len() as u32).to_ne_bytes());
        for e in &self.entries {
            for w in [e.id.idx, e.id.val, e.group, e.port, e.uid] {
                v.extend_from_slice(&w.to_ne_bytes());
            }
            v.extend_from_slice(&name_field(&e.name));
        }
        v
    }

    /// Decodes a LIST reply body.
    pub fn parse(b: &[u8]) -> Result<ListPage, CtlError> {
        need(b, 8)?;
        let count = u32_at(b, 4) as usize;
        let expected = 8usize.saturating_add(count.saturating_mul(LIST_ENTRY_LEN));
        if b.len() != expected {
            return Err(WireError::LengthMismatch { claimed: b.len(), expected }.into());
        }
        let entries = (0..count)
            .map(|i| {
                let e = &b[8 + i * LIST_ENTRY_LEN..8 + (i + 1) * LIST_ENTRY_LEN];
                ListEntry {
                    id: id_at(e, 0),
                    group: u32_at(e, 8),
                    port: u32_at(e, 12),
                    uid: u32_at(e, 16),
                    name: name_from(&e[20..]),
                }
            })
            .collect();
        Ok(ListPage { total: u32_at(b, 0), entries })
    }
}

/// Encodes a STATS body: `u32 count`, then `count` native-endian u64 counters.
pub fn stats_bytes(counters: &[u64]) -> Vec<u8> {
    let mut v = (counters.len() as u32).to_ne_bytes().to_vec();
    for c in counters {
        v.extend_from_slice(&c.to_ne_bytes());
    }
    v
}

/// Decodes a STATS body.
pub fn parse_stats(b: &[u8]) -> Result<Vec<u64>, CtlError> {
    need(b, 4)?;
    let n = u32_at(b, 0) as usize;
    let expected = 4usize.saturating_add(n.saturating_mul(8));
    if b.len() != expected {
        return Err(WireError::LengthMismatch { claimed: b.len(), expected }.into());
    }
    Ok((0..n).map(|i| u64_at(b, 4 + i * 8)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cn_test's historical example request (kept under `#if 0` in Documentation/connector/cn_test.c).
    fn cn_test_request() -> Vec<u8> {
        let words: [u32; 10] = [
            1,     // idx_notify_num
            2,     // val_notify_num
            1,     // group
            24,    // len = 3 * 8
            0x123, // idx range first
            10,    // idx range range
            0x456, // val range 1 first
            10,    // val range 1 range
            0x46a, // val range 2 first
            10,    // val range 2 range
        ];
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn ctl_msg_original_bytes() {
        let b = cn_test_request();
        let m = CtlMsg::parse(&b).unwrap();
        assert_eq!(m.group, 1);
        assert_eq!(m.idx, vec![NotifyRange { first: 0x123, range: 10 }]);
        assert_eq!(m.val.len(), 2);
        assert_eq!(m.to_bytes(), b);
        assert!(m.matches(CbId::new(0x123, 0x46a)), "second val range is scanned from the start");
        assert!(!m.matches(CbId::new(0x12d, 0x456)), "half-open: first + range is outside");
        assert!(m.matches(CbId::new(0x12c, 0x473)));
    }

    #[test]
    fn ctl_msg_lengths_must_add_up() {
        let mut b = cn_test_request();
        b[12] = 16; // ctl.len lies
        assert!(matches!(CtlMsg::parse(&b), Err(CtlError::Wire(WireError::LengthMismatch { .. }))));
        let b = cn_test_request();
        assert!(CtlMsg::parse(&b[..b.len() - 8]).is_err(), "counts need more ranges than present");
        assert!(CtlMsg::parse(&b[..10]).is_err());
        let mut huge = vec![0xffu8; 16];
        huge[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert!(CtlMsg::parse(&huge).is_err(), "no overflow on absurd counts");
    }

    #[test]
    fn ranges_do_not_overflow() {
        let r = NotifyRange { first: u32::MAX - 1, range: 10 };
        assert!(r.contains(u32::MAX));
        assert!(!r.contains(0));
        assert!(!NotifyRange { first: 5, range: 0 }.contains(5));
    }

    #[test]
    fn ops_round_trip() {
        let msg_bytes =
            cnlink::wire::datagram(CnMsgHdr { id: CbId::new(9, 9), seq: 3, ..Default::default() }, b"xy", 0).unwrap()
                [16..16 + 22]
                .to_vec();
        let ops = [
            BusOp::Register { id: CbId::new(14, 0x456), name: "echo".into() },
            BusOp::Unregister { id: CbId::new(14, 0x456) },
            BusOp::Join { group: u32::MAX },
            BusOp::Leave { group: 3 },
            BusOp::Send { group: 0, msg: CnMsg::new_checked(&msg_bytes[..]).unwrap() },
            BusOp::List { start: 7 },
            BusOp::Stats,
        ];
        for op in ops {
            let b = op.to_bytes();
            assert_eq!(Request::parse(&b).unwrap(), Request::Op(op.clone()));
        }
    }

    #[test]
    fn bad_ops_name_their_op() {
        let mut b = op_header(99);
        assert_eq!(Request::parse(&b), Err((99, CtlError::UnknownOp(99))));
        b = op_header(BUS_OP_JOIN);
        assert!(matches!(Request::parse(&b), Err((BUS_OP_JOIN, CtlError::Wire(_)))));
        b = BusOp::Join { group: 1 }.to_bytes();
        b[6] = 1;
        assert_eq!(Request::parse(&b), Err((BUS_OP_JOIN, CtlError::Reserved(1))));
        let send = send_op(0, CnMsgHdr::default(), b"abc").unwrap();
        assert!(Request::parse(&send[..send.len() - 1]).is_err(), "embedded cn_msg.len lies");
    }

    #[test]
    fn replies_and_pages() {
        let page = ListPage {
            total: 3,
            entries: vec![ListEntry { id: CbId::new(1, 2), group: 1, port: 77, uid: 1000, name: "x".repeat(40) }],
        };
        let body = page.to_bytes();
        let back = ListPage::parse(&body).unwrap();
        assert_eq!(back.entries[0].name.len(), 31, "names are cut to 31 bytes");
        let r = Reply { op: BUS_OP_LIST, errno: 0, body: &body };
        let bytes = r.to_bytes();
        assert_eq!(Reply::parse(&bytes).unwrap(), r);
        assert_eq!(parse_stats(&stats_bytes(&[1, 2, u64::MAX])).unwrap(), vec![1, 2, u64::MAX]);
        assert!(parse_stats(&[5, 0, 0, 0]).is_err());
        assert!(ListPage::parse(&[0, 0, 0, 0, 9, 0, 0, 0]).is_err());
    }
}
