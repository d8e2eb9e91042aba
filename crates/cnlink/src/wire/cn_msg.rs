//! The connector message (`struct cn_msg`): a 20-byte header and `len` bytes of data.
//!
//! ```text
//! offset  size  field
//!      0     4  id.idx   u32
//!      4     4  id.val   u32
//!      8     4  seq      u32  set by the sender
//!     12     4  ack      u32  set by the sender
//!     16     2  len      u16  data bytes after the header
//!     18     2  flags    u16  ignored by the core (w1 uses W1_CN_BUNDLE = 1)
//!     20   len  data
//! ```
//!
//! One netlink payload may hold several `cn_msg` back to back (`next = cur + 20 + cur.len`); [`CnMsgs`] walks them.
//! The data length comes from `cn_msg.len`, never from `nlmsg_len`: old kernels padded `nlmsg_len` to 4, new ones
//! do not, so up to three trailing bytes are accepted as padding.

use super::bytes::{put_u16, put_u32, u16_at, u32_at};
use super::error::{need, WireError};
use super::ids::CbId;
use super::netlink::{nlmsg_align, NlMsgHdr, NLMSG_DONE, NLMSG_HDRLEN};

/// Size of the `cn_msg` header.
pub const CN_MSG_HDRLEN: usize = 20;

mod field {
    use core::ops::Range;
    pub(super) const IDX: Range<usize> = 0..4;
    pub(super) const VAL: Range<usize> = 4..8;
    pub(super) const SEQ: Range<usize> = 8..12;
    pub(super) const ACK: Range<usize> = 12..16;
    pub(super) const LEN: Range<usize> = 16..18;
    pub(super) const FLAGS: Range<usize> = 18..20;
}

/// A zero-copy view of one `cn_msg`.
///
/// Built by [`CnMsg::new_checked`], it guarantees that the header and all `len` data bytes are in the buffer.
#[doc(alias = "cn_msg")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CnMsg<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CnMsg<T> {
    /// Wraps `buffer` after checking that the header and its `len` data bytes are present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        need(buf, CN_MSG_HDRLEN)?;
        let len = u16_at(buf, field::LEN);
        if CN_MSG_HDRLEN + len as usize > buf.len() {
            return Err(WireError::BadCnLen { cn_len: len, payload: buf.len() });
        }
        Ok(CnMsg { buffer })
    }

    /// `id`.
    pub fn id(&self) -> CbId {
        let b = self.buffer.as_ref();
        CbId { idx: u32_at(b, field::IDX), val: u32_at(b, field::VAL) }
    }

    /// `seq`.
    pub fn seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ)
    }

    /// `ack`.
    pub fn ack(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ACK)
    }

    /// `len`: data bytes.
    pub fn len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LEN)
    }

    /// True when the message carries no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `flags`.
    pub fn flags(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// The `len` data bytes.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[CN_MSG_HDRLEN..CN_MSG_HDRLEN + self.len() as usize]
    }

    /// Header and data: exactly `20 + len` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..CN_MSG_HDRLEN + self.len() as usize]
    }

    /// The header as an owned value.
    pub fn header(&self) -> CnMsgHdr {
        CnMsgHdr { id: self.id(), seq: self.seq(), ack: self.ack(), len: self.len(), flags: self.flags() }
    }
}

/// The owned form of the `cn_msg` header.
#[doc(alias = "cn_msg")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CnMsgHdr {
    /// `id`.
    pub id: CbId,
    /// `seq`.
    pub seq: u32,
    /// `ack`.
    pub ack: u32,
    /// `len`.
    pub len: u16,
    /// `flags`.
    pub flags: u16,
}

impl CnMsgHdr {
    /// The header of a reply to this message by the documents' rule: same id and `seq`, `ack + 1` (wrapping);
    /// `len` and `flags` 0 (`len` is set from the data when the datagram is built).
    pub fn reply(&self) -> CnMsgHdr {
        CnMsgHdr { ack: self.ack.wrapping_add(1), len: 0, flags: 0, ..*self }
    }

    /// Reads a header from the first 20 bytes of `buf` (the data is not checked).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        need(buf, CN_MSG_HDRLEN)?;
        Ok(CnMsgHdr {
            id: CbId { idx: u32_at(buf, field::IDX), val: u32_at(buf, field::VAL) },
            seq: u32_at(buf, field::SEQ),
            ack: u32_at(buf, field::ACK),
            len: u16_at(buf, field::LEN),
            flags: u16_at(buf, field::FLAGS),
        })
    }

    /// Writes the header into the first 20 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, CN_MSG_HDRLEN)?;
        put_u32(buf, field::IDX, self.id.idx);
        put_u32(buf, field::VAL, self.id.val);
        put_u32(buf, field::SEQ, self.seq);
        put_u32(buf, field::ACK, self.ack);
        put_u16(buf, field::LEN, self.len);
        put_u16(buf, field::FLAGS, self.flags);
        Ok(())
    }
}

/// Iterates over the `cn_msg`s packed back to back in one netlink payload.
///
/// Stops after the last message when at most three bytes (padding) remain; yields one error and stops when a
/// header or its data does not fit.
#[derive(Debug, Clone)]
pub struct CnMsgs<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> CnMsgs<'a> {
    /// Walks `payload` (a netlink message's payload).
    pub fn new(payload: &'a [u8]) -> Self {
        CnMsgs { rest: payload, failed: false }
    }
}

impl<'a> Iterator for CnMsgs<'a> {
    type Item = Result<CnMsg<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < 4 {
            return None;
        }
        match CnMsg::new_checked(self.rest) {
            Ok(msg) => {
                let (this, rest) = self.rest.split_at(CN_MSG_HDRLEN + msg.len() as usize);
                self.rest = rest;
                Some(Ok(CnMsg { buffer: this }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Builds a whole datagram, `nlmsghdr` + `cn_msg` + data + padding, the way the kernel frames it.
///
/// `nlmsg_len` is the exact unpadded length, `nlmsg_type` is `NLMSG_DONE`, `nlmsg_seq` copies `hdr.seq`; `hdr.len`
/// is set from `data`. Returns the number of bytes written (the padded length).
pub fn emit_datagram(buf: &mut [u8], mut hdr: CnMsgHdr, data: &[u8], nlmsg_pid: u32) -> Result<usize, WireError> {
    let len = u16::try_from(data.len()).map_err(|_| WireError::TooLong { len: data.len(), max: u16::MAX as usize })?;
    hdr.len = len;
    let exact = NLMSG_HDRLEN + CN_MSG_HDRLEN + data.len();
    let total = nlmsg_align(exact);
    need(buf, total)?;
    let nl = NlMsgHdr { len: exact as u32, ty: NLMSG_DONE, flags: 0, seq: hdr.seq, pid: nlmsg_pid };
    nl.emit(buf)?;
    hdr.emit(&mut buf[NLMSG_HDRLEN..])?;
    buf[NLMSG_HDRLEN + CN_MSG_HDRLEN..exact].copy_from_slice(data);
    buf[exact..total].fill(0);
    Ok(total)
}

/// Like [`emit_datagram`], into a new vector.
pub fn datagram(hdr: CnMsgHdr, data: &[u8], nlmsg_pid: u32) -> Result<Vec<u8>, WireError> {
    let mut v = vec![0u8; nlmsg_align(NLMSG_HDRLEN + CN_MSG_HDRLEN + data.len())];
    let n = emit_datagram(&mut v, hdr, data, nlmsg_pid)?;
    v.truncate(n);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::netlink::NlMsg;

    /// The legacy proc LISTEN request captured on Linux 6.18 (spec §2.4).
    const LISTEN: [u8; 40] = [
        0x28, 0, 0, 0, // nlmsg_len 40
        3, 0, 0, 0, // type NLMSG_DONE, flags 0
        0, 0, 0, 0, // nlmsg_seq 0
        0, 0, 0, 0, // nlmsg_pid 0
        1, 0, 0, 0, // id.idx CN_IDX_PROC
        1, 0, 0, 0, // id.val CN_VAL_PROC
        0, 0, 0, 0, // seq 0
        0, 0, 0, 0, // ack 0
        4, 0, 0, 0, // len 4, flags 0
        1, 0, 0, 0, // PROC_CN_MCAST_LISTEN
    ];

    #[test]
    fn parses_captured_listen() {
        let nl = NlMsg::new_checked(&LISTEN[..]).unwrap();
        let cn = CnMsg::new_checked(nl.payload()).unwrap();
        assert_eq!(cn.id(), CbId::PROC);
        assert_eq!(cn.len(), 4);
        assert_eq!(cn.data(), &1u32.to_ne_bytes());
    }

    #[test]
    fn emits_captured_listen() {
        let hdr = CnMsgHdr { id: CbId::PROC, ..Default::default() };
        assert_eq!(datagram(hdr, &1u32.to_ne_bytes(), 0).unwrap(), LISTEN);
    }

    #[test]
    fn pads_but_reports_exact_length() {
        let d = datagram(CnMsgHdr { id: CbId::new(14, 0x456), ..Default::default() }, b"abc", 9).unwrap();
        assert_eq!(d.len(), 40);
        assert_eq!(NlMsg::new_checked(&d[..]).unwrap().nlmsg_len(), 39);
    }

    #[test]
    fn several_back_to_back_and_old_padding() {
        let mut p = vec![0u8; 20];
        CnMsgHdr { id: CbId::new(3, 1), seq: 1, len: 2, ..Default::default() }.emit(&mut p).unwrap();
        p.extend_from_slice(&[9, 9]);
        let mut second = vec![0u8; 20];
        CnMsgHdr { id: CbId::new(3, 1), seq: 2, len: 1, ..Default::default() }.emit(&mut second).unwrap();
        p.extend(second);
        p.push(7);
        p.extend_from_slice(&[0, 0, 0]); // old-kernel padding of nlmsg_len
        let all: Vec<_> = CnMsgs::new(&p).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.iter().map(|m| m.seq()).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(all[1].data(), &[7]);
    }

    #[test]
    fn reply_header_follows_the_documents_rule() {
        let req = CnMsgHdr { id: CbId::new(14, 0x456), seq: 7, ack: u32::MAX, len: 12, flags: 3 };
        assert_eq!(req.reply(), CnMsgHdr { id: CbId::new(14, 0x456), seq: 7, ack: 0, len: 0, flags: 0 });
    }

    #[test]
    fn lying_len_is_an_error() {
        let mut p = vec![0u8; 24];
        CnMsgHdr { len: 8, ..Default::default() }.emit(&mut p).unwrap();
        assert_eq!(CnMsg::new_checked(&p[..]).unwrap_err(), WireError::BadCnLen { cn_len: 8, payload: 24 });
        let mut it = CnMsgs::new(&p);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn field_table_matches_the_c_layout() {
        // `struct cn_msg` of include/uapi/linux/connector.h, laid out by the C rules.
        #[repr(C)]
        struct CCnMsg {
            idx: u32,
            val: u32,
            seq: u32,
            ack: u32,
            len: u16,
            flags: u16,
            data: [u8; 0],
        }
        use core::mem::{offset_of, size_of};
        assert_eq!(size_of::<CCnMsg>(), CN_MSG_HDRLEN);
        assert_eq!(offset_of!(CCnMsg, data), CN_MSG_HDRLEN);
        let table = [
            (field::IDX, offset_of!(CCnMsg, idx), 4),
            (field::VAL, offset_of!(CCnMsg, val), 4),
            (field::SEQ, offset_of!(CCnMsg, seq), 4),
            (field::ACK, offset_of!(CCnMsg, ack), 4),
            (field::LEN, offset_of!(CCnMsg, len), 2),
            (field::FLAGS, offset_of!(CCnMsg, flags), 2),
        ];
        for (range, offset, size) in table {
            assert_eq!((range.start, range.len()), (offset, size));
        }
    }
}
