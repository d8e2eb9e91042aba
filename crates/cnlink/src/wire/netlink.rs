//! The netlink header (`struct nlmsghdr`) and iteration over a datagram's messages.
//!
//! ```text
//! offset  size  field
//!      0     4  nlmsg_len    u32  header + payload, without trailing padding (old kernels padded it to 4)
//!      4     2  nlmsg_type   u16  NLMSG_NOOP 1, NLMSG_ERROR 2, NLMSG_DONE 3 (every connector message), NLMSG_OVERRUN 4
//!      6     2  nlmsg_flags  u16
//!      8     4  nlmsg_seq    u32  the kernel copies cn_msg.seq here
//!     12     4  nlmsg_pid    u32  sender port id (0 = kernel)
//!     16        payload, then zero padding to a multiple of 4 before the next header
//! ```
//!
//! This layer interprets nothing above the header: [`NlMsg::kind`] only names the control types.

use super::bytes::{i32_at, put_u16, put_u32, u16_at, u32_at};
use super::error::{need, WireError};

/// Netlink messages are aligned to this many bytes (`NLMSG_ALIGNTO`).
pub const NLMSG_ALIGNTO: usize = 4;
/// Size of `struct nlmsghdr` (`NLMSG_HDRLEN`).
pub const NLMSG_HDRLEN: usize = 16;
/// `nlmsg_type`: nothing, ignore.
pub const NLMSG_NOOP: u16 = 1;
/// `nlmsg_type`: an error or ack (`struct nlmsgerr` follows).
pub const NLMSG_ERROR: u16 = 2;
/// `nlmsg_type`: end of a dump; also the type of every connector message.
pub const NLMSG_DONE: u16 = 3;
/// `nlmsg_type`: data lost.
pub const NLMSG_OVERRUN: u16 = 4;
/// First `nlmsg_type` free for protocol use.
pub const NLMSG_MIN_TYPE: u16 = 0x10;

/// `nlmsg_flags`: a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `nlmsg_flags`: part of a multipart message.
pub const NLM_F_MULTI: u16 = 0x2;
/// `nlmsg_flags`: ask for an ack (the connector never sends one).
pub const NLM_F_ACK: u16 = 0x4;
/// `nlmsg_flags`: echo this request.
pub const NLM_F_ECHO: u16 = 0x8;

/// `NLMSG_ALIGN`: rounds `len` up to a multiple of 4.
#[doc(alias = "NLMSG_ALIGN")]
#[inline]
pub const fn nlmsg_align(len: usize) -> usize {
    (len + NLMSG_ALIGNTO - 1) & !(NLMSG_ALIGNTO - 1)
}

/// `NLMSG_LENGTH`: header plus `payload` bytes, unpadded.
#[doc(alias = "NLMSG_LENGTH")]
#[inline]
pub const fn nlmsg_length(payload: usize) -> usize {
    payload + NLMSG_HDRLEN
}

/// `NLMSG_SPACE`: header plus `payload` bytes, padded to 4.
#[doc(alias = "NLMSG_SPACE")]
#[inline]
pub const fn nlmsg_space(payload: usize) -> usize {
    nlmsg_align(nlmsg_length(payload))
}

mod field {
    use core::ops::Range;
    pub(super) const LEN: Range<usize> = 0..4;
    pub(super) const TYPE: Range<usize> = 4..6;
    pub(super) const FLAGS: Range<usize> = 6..8;
    pub(super) const SEQ: Range<usize> = 8..12;
    pub(super) const PID: Range<usize> = 12..16;
}

/// A netlink address (`struct sockaddr_nl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NlAddr {
    /// Port id; 0 is the kernel.
    pub port: u32,
    /// Group bitmask: bit `g - 1` is group `g` (see [`super::group_mask`]).
    pub groups: u32,
}

impl NlAddr {
    /// The kernel: port 0, no groups.
    pub const KERNEL: NlAddr = NlAddr { port: 0, groups: 0 };

    /// A unicast address.
    pub const fn port(port: u32) -> Self {
        NlAddr { port, groups: 0 }
    }
}

/// What an `nlmsg_type` means at the netlink level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlKind {
    /// `NLMSG_NOOP`.
    Noop,
    /// `NLMSG_ERROR` with its (negative) errno, or 0 for an ack; `None` if the payload is too short to hold it.
    Error(Option<i32>),
    /// `NLMSG_OVERRUN`.
    Overrun,
    /// Any other type: data for the protocol above (connector messages use `NLMSG_DONE`).
    Data(u16),
}

/// A zero-copy view of one netlink message.
///
/// Built by [`NlMsg::new_checked`], it guarantees `16 <= nlmsg_len <= buffer.len()`, so no accessor panics.
#[doc(alias = "nlmsghdr")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsg<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NlMsg<T> {
    /// Wraps `buffer` after checking the header and `nlmsg_len` against it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        need(buf, NLMSG_HDRLEN)?;
        let len = u32_at(buf, field::LEN);
        if (len as usize) < NLMSG_HDRLEN || len as usize > buf.len() {
            return Err(WireError::BadNlmsgLen { nlmsg_len: len, available: buf.len() });
        }
        Ok(NlMsg { buffer })
    }

    /// `nlmsg_len`: header plus payload.
    pub fn nlmsg_len(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::LEN)
    }

    /// `nlmsg_type`.
    pub fn nlmsg_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::TYPE)
    }

    /// `nlmsg_flags`.
    pub fn nlmsg_flags(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// `nlmsg_seq`.
    pub fn nlmsg_seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ)
    }

    /// `nlmsg_pid`: the sender's port id as it wrote it (0 for the kernel).
    pub fn nlmsg_pid(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::PID)
    }

    /// The payload: bytes 16 to `nlmsg_len`.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[NLMSG_HDRLEN..self.nlmsg_len() as usize]
    }

    /// The header as an owned value.
    pub fn header(&self) -> NlMsgHdr {
        NlMsgHdr {
            len: self.nlmsg_len(),
            ty: self.nlmsg_type(),
            flags: self.nlmsg_flags(),
            seq: self.nlmsg_seq(),
            pid: self.nlmsg_pid(),
        }
    }

    /// Names the control types; everything else is [`NlKind::Data`].
    pub fn kind(&self) -> NlKind {
        match self.nlmsg_type() {
            NLMSG_NOOP => NlKind::Noop,
            NLMSG_ERROR => {
                let p = self.payload();
                NlKind::Error((p.len() >= 4).then(|| i32_at(p, 0..4)))
            }
            NLMSG_OVERRUN => NlKind::Overrun,
            t => NlKind::Data(t),
        }
    }
}

/// The owned form of `struct nlmsghdr`.
#[doc(alias = "nlmsghdr")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct NlMsgHdr {
    /// `nlmsg_len`.
    pub len: u32,
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
}

impl NlMsgHdr {
    /// Reads a header from the first 16 bytes of `buf` without judging `len`.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        need(buf, NLMSG_HDRLEN)?;
        Ok(NlMsgHdr {
            len: u32_at(buf, field::LEN),
            ty: u16_at(buf, field::TYPE),
            flags: u16_at(buf, field::FLAGS),
            seq: u32_at(buf, field::SEQ),
            pid: u32_at(buf, field::PID),
        })
    }

    /// Writes the header into the first 16 bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, NLMSG_HDRLEN)?;
        put_u32(buf, field::LEN, self.len);
        put_u16(buf, field::TYPE, self.ty);
        put_u16(buf, field::FLAGS, self.flags);
        put_u32(buf, field::SEQ, self.seq);
        put_u32(buf, field::PID, self.pid);
        Ok(())
    }
}

/// Iterates over the netlink messages of one datagram (`NLMSG_OK`/`NLMSG_NEXT`).
///
/// Yields each message, advancing by its aligned length; yields one error and stops at the first malformed header.
/// Fewer than four trailing bytes are padding and end the walk quietly.
#[derive(Debug, Clone)]
pub struct NlMessages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> NlMessages<'a> {
    /// Walks `datagram`.
    pub fn new(datagram: &'a [u8]) -> Self {
        NlMessages { rest: datagram, failed: false }
    }
}

impl<'a> Iterator for NlMessages<'a> {
    type Item = Result<NlMsg<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.len() < NLMSG_ALIGNTO {
            return None;
        }
        match NlMsg::new_checked(self.rest) {
            Ok(msg) => {
                let len = msg.nlmsg_len() as usize;
                let step = nlmsg_align(len).min(self.rest.len());
                let (this, rest) = self.rest.split_at(step);
                self.rest = rest;
                Some(Ok(NlMsg { buffer: &this[..len] }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(len: u32, ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; NLMSG_HDRLEN];
        NlMsgHdr { len, ty, flags: 0, seq: 7, pid: 0 }.emit(&mut v).unwrap();
        v.extend_from_slice(payload);
        v.resize(nlmsg_align(v.len()), 0);
        v
    }

    #[test]
    fn header_round_trip() {
        let h = NlMsgHdr { len: 40, ty: NLMSG_DONE, flags: 0x1234, seq: 0xdeadbeef, pid: 42 };
        let mut b = [0u8; 16];
        h.emit(&mut b).unwrap();
        assert_eq!(&b[..4], &40u32.to_ne_bytes());
        assert_eq!(NlMsgHdr::parse(&b).unwrap(), h);
    }

    #[test]
    fn macros_match_c() {
        assert_eq!(nlmsg_align(37), 40);
        assert_eq!(nlmsg_length(60), 76);
        assert_eq!(nlmsg_space(61), 80);
        assert_eq!(core::mem::size_of::<libc::nlmsghdr>(), NLMSG_HDRLEN);
        assert_eq!(NLMSG_DONE as i32, libc::NLMSG_DONE);
        assert_eq!(NLMSG_ERROR as i32, libc::NLMSG_ERROR);
        assert_eq!(NLMSG_OVERRUN as i32, libc::NLMSG_OVERRUN);
    }

    #[test]
    fn walks_several_messages_with_padding() {
        let mut d = msg(17, NLMSG_DONE, &[1]);
        d.extend(msg(20, NLMSG_NOOP, &[1, 2, 3, 4]));
        let all: Vec<_> = NlMessages::new(&d).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].payload(), &[1]);
        assert_eq!(all[1].kind(), NlKind::Noop);
    }

    #[test]
    fn rejects_lying_lengths() {
        let d = msg(100, NLMSG_DONE, &[0; 4]);
        assert!(matches!(NlMessages::new(&d).next(), Some(Err(WireError::BadNlmsgLen { nlmsg_len: 100, .. }))));
        let d = msg(8, NLMSG_DONE, &[]);
        assert!(matches!(NlMsg::new_checked(&d[..]), Err(WireError::BadNlmsgLen { .. })));
        assert!(matches!(NlMsg::new_checked(&d[..10]), Err(WireError::Truncated { needed: 16, got: 10 })));
    }

    #[test]
    fn error_kind() {
        let d = msg(20, NLMSG_ERROR, &(-22i32).to_ne_bytes());
        assert_eq!(NlMsg::new_checked(&d[..]).unwrap().kind(), NlKind::Error(Some(-22)));
        let d = msg(16, NLMSG_ERROR, &[]);
        assert_eq!(NlMsg::new_checked(&d[..]).unwrap().kind(), NlKind::Error(None));
    }
}
