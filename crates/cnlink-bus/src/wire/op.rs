//! The bus's own control ops: an 8-byte header, then a body whose size is fixed per op.
//!
//! ```text
//! offset size field
//!      0    4 magic     u32  BUS_MAGIC
//!      4    2 op        u16  BUS_OP_*
//!      6    2 reserved  u16  0
//!      8      body            per op:
//!   REGISTER   idx u32, val u32, optional name[32]       8 or 40 bytes
//!   UNREGISTER idx u32, val u32                          8
//!   JOIN/LEAVE group u32                                 4
//!   SEND       group u32, cn_msg header, data[len]      24 + len
//!   PUBLISH    the same as SEND                          24 + len
//!   LIST       start u32 (optional)                      0 or 4
//!   STATS      nothing                                   0
//! ```

use cnlink::wire::bytes::{need, put_u16, put_u32, u16_at, u32_at};
use cnlink::wire::{CbId, CnMsg, CnMsgHdr, WireError, CN_MSG_HDRLEN};

use super::{CtlError, BUS_MAGIC};

/// Size of the op header (magic, op, reserved).
pub const OP_HDRLEN: usize = 8;
/// Name field of a registration, NUL included (`CN_CBQ_NAMELEN`).
pub const NAME_LEN: usize = 32;

/// Op: register an id for the sender.
pub const BUS_OP_REGISTER: u16 = 1;
/// Op: unregister an id.
pub const BUS_OP_UNREGISTER: u16 = 2;
/// Op: subscribe the sender to a group.
pub const BUS_OP_JOIN: u16 = 3;
/// Op: unsubscribe the sender from a group.
pub const BUS_OP_LEAVE: u16 = 4;
/// Op: send a `cn_msg` to a group (`cn_netlink_send`), answered like every op.
pub const BUS_OP_SEND: u16 = 5;
/// Op: list registered ids (`/proc/net/connector`).
pub const BUS_OP_LIST: u16 = 6;
/// Op: the daemon's counters.
pub const BUS_OP_STATS: u16 = 7;
/// Op: SEND without a reply, for a publisher that sends as fast as the bus takes (refusals are only counted).
pub const BUS_OP_PUBLISH: u16 = 8;
/// Reply op for an error about a data message to a registered id (policy denial, route collision); its body is the
/// id.
pub const BUS_OP_MESSAGE: u16 = 0x8000;

/// Byte ranges of the op header, and of the bodies relative to the body's start.
mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const OP: Range<usize> = 4..6;
    pub(super) const RESERVED: Range<usize> = 6..8;
    /// REGISTER and UNREGISTER.
    pub(super) const IDX: Range<usize> = 0..4;
    pub(super) const VAL: Range<usize> = 4..8;
    pub(super) const NAME: Range<usize> = 8..8 + super::NAME_LEN;
    /// JOIN, LEAVE, SEND, PUBLISH; LIST's start.
    pub(super) const GROUP: Range<usize> = 0..4;
    /// SEND and PUBLISH: the `cn_msg` from here to the end.
    pub(super) const MSG: usize = 4;
}

/// A zero-copy view of bus op data: the header is present and its magic is [`BUS_MAGIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpMsg<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> OpMsg<T> {
    /// Wraps `buffer` after checking the header's length and magic.
    pub fn new_checked(buffer: T) -> Result<Self, CtlError> {
        let b = buffer.as_ref();
        need(b, OP_HDRLEN)?;
        match u32_at(b, field::MAGIC) {
            BUS_MAGIC => Ok(OpMsg { buffer }),
            magic => Err(CtlError::BadMagic(magic)),
        }
    }

    /// The op number.
    pub fn op(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::OP)
    }

    /// The reserved field (0 in a valid op).
    pub fn reserved(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::RESERVED)
    }

    /// The op's body.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[OP_HDRLEN..]
    }
}

/// Writes the op header for `op` into the first [`OP_HDRLEN`] bytes of `buf`.
pub fn emit_op_header(buf: &mut [u8], op: u16) -> Result<(), WireError> {
    need(buf, OP_HDRLEN)?;
    put_u32(buf, field::MAGIC, BUS_MAGIC);
    put_u16(buf, field::OP, op);
    put_u16(buf, field::RESERVED, 0);
    Ok(())
}

/// The op header for `op`, in a vector with room for a body.
pub fn op_header(op: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.resize(OP_HDRLEN, 0);
    emit_op_header(&mut v, op).expect("sized to the header");
    v
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
    /// [`BusOp::Send`] without a reply.
    Publish {
        /// The group.
        group: u32,
        /// The message to deliver.
        msg: CnMsg<&'a [u8]>,
    },
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

fn id_at(b: &[u8]) -> CbId {
    CbId::new(u32_at(b, field::IDX), u32_at(b, field::VAL))
}

/// Checks that a body is exactly `n` bytes.
fn exact(b: &[u8], n: usize) -> Result<(), CtlError> {
    if b.len() != n {
        return Err(WireError::LengthMismatch { claimed: b.len(), expected: n }.into());
    }
    Ok(())
}

/// A SEND or PUBLISH body: the group, then a `cn_msg` with exactly its `len` data bytes.
fn group_msg(b: &[u8]) -> Result<(u32, CnMsg<&[u8]>), CtlError> {
    need(b, field::MSG)?;
    let msg = CnMsg::new_checked(&b[field::MSG..])?;
    exact(b, field::MSG + msg.as_bytes().len())?;
    Ok((u32_at(b, field::GROUP), msg))
}

impl<'a> BusOp<'a> {
    /// Decodes an op: its number (checked first, so that an unknown op is told apart from a malformed one), the
    /// reserved field, then the body's exact size.
    pub fn parse(op: OpMsg<&'a [u8]>) -> Result<BusOp<'a>, CtlError> {
        let code = op.op();
        if !(BUS_OP_REGISTER..=BUS_OP_PUBLISH).contains(&code) {
            return Err(CtlError::UnknownOp(code));
        }
        if op.reserved() != 0 {
            return Err(CtlError::Reserved(op.reserved()));
        }
        let b = &op.buffer[OP_HDRLEN..];
        Ok(match code {
            BUS_OP_REGISTER => {
                if b.len() != field::NAME.start {
                    exact(b, field::NAME.end)?;
                }
                let name = b.get(field::NAME).map(name_from).unwrap_or_default();
                BusOp::Register { id: id_at(b), name }
            }
            BUS_OP_UNREGISTER => {
                exact(b, field::NAME.start)?;
                BusOp::Unregister { id: id_at(b) }
            }
            BUS_OP_JOIN => {
                exact(b, field::GROUP.end)?;
                BusOp::Join { group: u32_at(b, field::GROUP) }
            }
            BUS_OP_LEAVE => {
                exact(b, field::GROUP.end)?;
                BusOp::Leave { group: u32_at(b, field::GROUP) }
            }
            BUS_OP_SEND => {
                let (group, msg) = group_msg(b)?;
                BusOp::Send { group, msg }
            }
            BUS_OP_PUBLISH => {
                let (group, msg) = group_msg(b)?;
                BusOp::Publish { group, msg }
            }
            BUS_OP_LIST if b.is_empty() => BusOp::List { start: 0 },
            BUS_OP_LIST => {
                exact(b, field::GROUP.end)?;
                BusOp::List { start: u32_at(b, field::GROUP) }
            }
            _ => {
                exact(b, 0)?;
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
            BusOp::Publish { .. } => BUS_OP_PUBLISH,
        }
    }

    /// Whether the bus answers this op (every op but PUBLISH).
    pub fn is_answered(&self) -> bool {
        !matches!(self, BusOp::Publish { .. })
    }

    /// The encoded size, header included.
    pub fn buffer_len(&self) -> usize {
        OP_HDRLEN
            + match self {
                BusOp::Register { .. } => field::NAME.end,
                BusOp::Unregister { .. } => field::NAME.start,
                BusOp::Join { .. } | BusOp::Leave { .. } | BusOp::List { .. } => field::GROUP.end,
                BusOp::Send { msg, .. } | BusOp::Publish { msg, .. } => field::MSG + msg.as_bytes().len(),
                BusOp::Stats => 0,
            }
    }

    /// Writes the op (header and body) into the first [`BusOp::buffer_len`] bytes of `buf`. A REGISTER always
    /// carries the name field.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, self.buffer_len())?;
        emit_op_header(buf, self.code())?;
        let b = &mut buf[OP_HDRLEN..self.buffer_len()];
        match self {
            BusOp::Register { id, name } => {
                put_u32(b, field::IDX, id.idx);
                put_u32(b, field::VAL, id.val);
                b[field::NAME].copy_from_slice(&name_field(name));
            }
            BusOp::Unregister { id } => {
                put_u32(b, field::IDX, id.idx);
                put_u32(b, field::VAL, id.val);
            }
            BusOp::Join { group } | BusOp::Leave { group } | BusOp::List { start: group } => {
                put_u32(b, field::GROUP, *group)
            }
            BusOp::Send { group, msg } | BusOp::Publish { group, msg } => {
                put_u32(b, field::GROUP, *group);
                b[field::MSG..].copy_from_slice(msg.as_bytes());
            }
            BusOp::Stats => {}
        }
        Ok(())
    }

    /// Encodes the op (header and body) as `cn_msg` data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v).expect("sized by buffer_len");
        v
    }
}

/// Encodes a SEND or PUBLISH op carrying `hdr` and `data` (`hdr.len` is taken from `data`).
fn group_op(code: u16, group: u32, mut hdr: CnMsgHdr, data: &[u8]) -> Result<Vec<u8>, WireError> {
    hdr.len = u16::try_from(data.len()).map_err(|_| WireError::TooLong { len: data.len(), max: u16::MAX as usize })?;
    let at = OP_HDRLEN + field::MSG;
    let mut v = vec![0; at + CN_MSG_HDRLEN + data.len()];
    emit_op_header(&mut v, code)?;
    put_u32(&mut v[OP_HDRLEN..], field::GROUP, group);
    hdr.emit(&mut v[at..])?;
    v[at + CN_MSG_HDRLEN..].copy_from_slice(data);
    Ok(v)
}

/// Encodes the data of a [`BusOp::Send`] for `hdr` and `data` (`hdr.len` is taken from `data`).
pub fn send_op(group: u32, hdr: CnMsgHdr, data: &[u8]) -> Result<Vec<u8>, WireError> {
    group_op(BUS_OP_SEND, group, hdr, data)
}

/// Encodes the data of a [`BusOp::Publish`] for `hdr` and `data` (`hdr.len` is taken from `data`).
pub fn publish_op(group: u32, hdr: CnMsgHdr, data: &[u8]) -> Result<Vec<u8>, WireError> {
    group_op(BUS_OP_PUBLISH, group, hdr, data)
}
