//! The bus's control messages: the historical `cn_ctl_msg` notification request, the bus's own control ops, and
//! the replies. No IO; every structure has a field table, every decoder checks lengths and returns a typed error,
//! never panics, and every encoder writes into a caller's buffer (`emit`) or a new vector (`to_bytes`).
//!
//! All control traffic is an ordinary `cn_msg` to the core's own id `{0xffffffff, 0xffffffff}`. Its data is one of:
//!
//! ```text
//! historical notification request (cn_ctl_msg, 2.6.14-2.6.32), byte for byte:     see ctl_msg
//!   0  u32 idx_notify_num, 4 u32 val_notify_num, 8 u32 group, 12 u32 len, 16 ranges
//!
//! bus op (first u32 is BUS_MAGIC, which no cn_ctl_msg the bus accepts can start with: the bus takes at most
//! 16384 bytes of data, so idx_notify_num is at most 2043):                           see op
//!   0  u32 magic = BUS_MAGIC
//!   4  u16 op                    BUS_OP_*
//!   6  u16 reserved = 0
//!   8      body (per op)
//!
//! reply (bus -> requester, unicast, id {-1,-1}, same seq, ack = request ack + 1):   see reply
//!   0  u32 magic = BUS_MAGIC
//!   4  u16 op                    the request's op (0 for a cn_ctl_msg request)
//!   6  u16 reserved = 0
//!   8  u32 errno                 0 on success, else a positive errno
//!  12      body (LIST and STATS only)
//! ```

mod ctl_msg;
mod list;
mod op;
mod reply;
mod stats;

use cnlink::wire::bytes::u32_at;
use cnlink::wire::WireError;

pub use ctl_msg::{CtlMsg, NotifyRange, CTL_HDRLEN, NOTIFY_REQ_LEN};
pub use list::{ListEntry, ListPage, LIST_ENTRY_LEN, LIST_HDRLEN, LIST_PAGE};
pub use op::{
    emit_op_header, name_field, name_from, op_header, publish_op, send_op, BusOp, OpMsg, BUS_OP_JOIN, BUS_OP_LEAVE,
    BUS_OP_LIST, BUS_OP_MESSAGE, BUS_OP_PUBLISH, BUS_OP_REGISTER, BUS_OP_SEND, BUS_OP_STATS, BUS_OP_UNREGISTER,
    NAME_LEN, OP_HDRLEN,
};
pub use reply::{Reply, REPLY_HDRLEN};
pub use stats::{parse_stats, stats_bytes};

/// First word of every bus op and reply: the bytes `"CBUS"` on a little-endian machine.
pub const BUS_MAGIC: u32 = 0x5355_4243;

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

impl CtlError {
    /// The positive errno the bus answers a request with that did not decode: `EOPNOTSUPP` for an unknown op,
    /// `EINVAL` for everything else.
    pub fn errno(self) -> u32 {
        (match self {
            CtlError::UnknownOp(_) => libc::EOPNOTSUPP,
            _ => libc::EINVAL,
        }) as u32
    }
}

/// What a control `cn_msg` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// A historical notification request.
    Notify(CtlMsg),
    /// A bus op.
    Op(BusOp<'a>),
}

impl<'a> Request<'a> {
    /// Decodes the data of a `cn_msg` sent to the control id: a bus op when it starts with [`BUS_MAGIC`], else a
    /// `cn_ctl_msg`. The op is returned with errors where known (0 otherwise), so that the reply can name it.
    pub fn parse(data: &'a [u8]) -> Result<Request<'a>, (u16, CtlError)> {
        if data.len() < 4 || u32_at(data, 0..4) != BUS_MAGIC {
            return CtlMsg::parse(data).map(Request::Notify).map_err(|e| (0, e));
        }
        let op = OpMsg::new_checked(data).map_err(|e| (0, e))?;
        BusOp::parse(op).map(Request::Op).map_err(|e| (op.op(), e))
    }

    /// The op number a reply to this request carries (0 for a notification request).
    pub fn code(&self) -> u16 {
        match self {
            Request::Notify(_) => 0,
            Request::Op(op) => op.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnlink::wire::{CbId, CnMsg, CnMsgHdr};

    #[test]
    fn ops_round_trip() {
        let msg_bytes =
            cnlink::wire::datagram(CnMsgHdr { id: CbId::new(9, 9), seq: 3, ..Default::default() }, b"xy", 0).unwrap()
                [16..16 + 22]
                .to_vec();
        let msg = CnMsg::new_checked(&msg_bytes[..]).unwrap();
        let ops = [
            BusOp::Register { id: CbId::new(14, 0x456), name: "echo".into() },
            BusOp::Unregister { id: CbId::new(14, 0x456) },
            BusOp::Join { group: u32::MAX },
            BusOp::Leave { group: 3 },
            BusOp::Send { group: 0, msg },
            BusOp::List { start: 7 },
            BusOp::Stats,
            BusOp::Publish { group: 9, msg },
        ];
        for op in ops {
            let b = op.to_bytes();
            assert_eq!(b.len(), op.buffer_len());
            assert_eq!(Request::parse(&b).unwrap(), Request::Op(op.clone()));
            assert_eq!(op.is_answered(), op.code() != BUS_OP_PUBLISH);
        }
        let hdr = CnMsgHdr { id: CbId::new(9, 9), seq: 3, ..Default::default() };
        assert_eq!(
            Request::parse(&publish_op(9, hdr, b"xy").unwrap()).unwrap(),
            Request::Op(BusOp::Publish { group: 9, msg })
        );
        assert_eq!(
            Request::parse(&send_op(0, hdr, b"xy").unwrap()).unwrap(),
            Request::Op(BusOp::Send { group: 0, msg })
        );
    }

    /// The REGISTER of docs/bus-protocol.md's worked example, byte for byte.
    #[test]
    fn register_bytes() {
        let b = BusOp::Register { id: CbId::new(0x123, 0x456), name: "echo".into() }.to_bytes();
        let mut want = vec![0x43, 0x42, 0x55, 0x53, 1, 0, 0, 0, 0x23, 1, 0, 0, 0x56, 4, 0, 0, b'e', b'c', b'h', b'o'];
        want.resize(48, 0);
        if cfg!(target_endian = "little") {
            assert_eq!(b, want);
        }
        assert_eq!(
            Request::parse(&b[..16]).unwrap(),
            Request::Op(BusOp::Register { id: CbId::new(0x123, 0x456), name: String::new() }),
            "the name is optional"
        );
    }

    #[test]
    fn bad_ops_name_their_op() {
        let mut b = op_header(99);
        assert_eq!(Request::parse(&b), Err((99, CtlError::UnknownOp(99))));
        assert_eq!(CtlError::UnknownOp(99).errno(), libc::EOPNOTSUPP as u32);
        b = op_header(BUS_OP_JOIN);
        assert!(matches!(Request::parse(&b), Err((BUS_OP_JOIN, CtlError::Wire(_)))));
        b = BusOp::Join { group: 1 }.to_bytes();
        b[6] = 1;
        assert_eq!(Request::parse(&b), Err((BUS_OP_JOIN, CtlError::Reserved(1))));
        assert_eq!(CtlError::Reserved(1).errno(), libc::EINVAL as u32);
        let send = send_op(0, CnMsgHdr::default(), b"abc").unwrap();
        assert!(Request::parse(&send[..send.len() - 1]).is_err(), "embedded cn_msg.len lies");
        assert!(Request::parse(&[0x43, 0x42, 0x55, 0x53, 1]).is_err(), "a header cut short");
        assert!(BusOp::Stats.emit(&mut [0; 7]).is_err(), "emit checks the buffer");
    }

    #[test]
    fn replies_and_pages() {
        let page = ListPage {
            total: 3,
            entries: vec![ListEntry { id: CbId::new(1, 2), group: 1, port: 77, uid: 1000, name: "x".repeat(40) }],
        };
        let body = page.to_bytes();
        assert_eq!(body.len(), LIST_HDRLEN + LIST_ENTRY_LEN);
        let back = ListPage::parse(&body).unwrap();
        assert_eq!(back.entries[0].name.len(), 31, "names are cut to 31 bytes");
        assert_eq!((back.total, back.entries[0].port, back.entries[0].uid), (3, 77, 1000));
        let r = Reply { op: BUS_OP_LIST, errno: 0, body: &body };
        let bytes = r.to_bytes();
        assert_eq!(Reply::parse(&bytes).unwrap(), r);
        assert_eq!(Reply::parse(&bytes[..11]), Err(CtlError::Wire(WireError::Truncated { needed: 12, got: 11 })));
        assert_eq!(parse_stats(&stats_bytes(&[1, 2, u64::MAX])).unwrap(), vec![1, 2, u64::MAX]);
        assert!(parse_stats(&[5, 0, 0, 0]).is_err());
        assert!(ListPage::parse(&[0, 0, 0, 0, 9, 0, 0, 0]).is_err());
    }
}
