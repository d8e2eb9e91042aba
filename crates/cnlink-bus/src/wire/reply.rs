//! The bus's reply to a control request (and its refusal of a data message).
//!
//! ```text
//! offset size field
//!      0    4 magic     u32  BUS_MAGIC
//!      4    2 op        u16  the request's op (0 for a cn_ctl_msg, BUS_OP_MESSAGE for a data message)
//!      6    2 reserved  u16  0
//!      8    4 errno     u32  0 on success, else a positive errno
//!     12      body            LIST: a page; STATS: the counters; a refused data message: the id
//! ```

use cnlink::wire::bytes::{need, put_u16, put_u32, u16_at, u32_at};
use cnlink::wire::WireError;

use super::{CtlError, BUS_MAGIC};

/// Size of the reply header (magic, op, reserved, errno).
pub const REPLY_HDRLEN: usize = 12;

mod field {
    use core::ops::Range;
    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const OP: Range<usize> = 4..6;
    pub(super) const RESERVED: Range<usize> = 6..8;
    pub(super) const ERRNO: Range<usize> = 8..12;
}

/// A reply from the bus to a control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The request's op (0 for a `cn_ctl_msg`).
    pub op: u16,
    /// 0 on success, else a positive errno.
    pub errno: u32,
    /// The op's result (LIST and STATS), or the id of a refused data message.
    pub body: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Decodes reply data (the reserved field is not checked).
    pub fn parse(data: &'a [u8]) -> Result<Reply<'a>, CtlError> {
        need(data, REPLY_HDRLEN)?;
        let magic = u32_at(data, field::MAGIC);
        if magic != BUS_MAGIC {
            return Err(CtlError::BadMagic(magic));
        }
        Ok(Reply { op: u16_at(data, field::OP), errno: u32_at(data, field::ERRNO), body: &data[REPLY_HDRLEN..] })
    }

    /// The encoded size.
    pub fn buffer_len(&self) -> usize {
        REPLY_HDRLEN + self.body.len()
    }

    /// Writes the reply into the first [`Reply::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, self.buffer_len())?;
        put_u32(buf, field::MAGIC, BUS_MAGIC);
        put_u16(buf, field::OP, self.op);
        put_u16(buf, field::RESERVED, 0);
        put_u32(buf, field::ERRNO, self.errno);
        buf[REPLY_HDRLEN..self.buffer_len()].copy_from_slice(self.body);
        Ok(())
    }

    /// Encodes reply data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v).expect("sized by buffer_len");
        v
    }
}
