//! The historical notification request, `struct cn_ctl_msg` (2.6.14-2.6.32), byte for byte.
//!
//! ```text
//! offset size field
//!      0    4 idx_notify_num  u32  number of idx ranges
//!      4    4 val_notify_num  u32  number of val ranges
//!      8    4 group           u32  group to notify; 0 removes the equal request
//!     12    4 len             u32  (idx_notify_num + val_notify_num) * 8
//!     16      idx ranges, then val ranges, each a cn_notify_req:
//!         0    4 first  u32
//!         4    4 range  u32       half-open [first, first + range)
//! ```

use cnlink::wire::bytes::{need, put_u32, u32_at};
use cnlink::wire::{CbId, WireError};

use super::CtlError;

/// Size of the `cn_ctl_msg` header.
pub const CTL_HDRLEN: usize = 16;
/// Size of one `cn_notify_req`.
pub const NOTIFY_REQ_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub(super) const IDX_NUM: Range<usize> = 0..4;
    pub(super) const VAL_NUM: Range<usize> = 4..8;
    pub(super) const GROUP: Range<usize> = 8..12;
    pub(super) const LEN: Range<usize> = 12..16;
    /// Within one `cn_notify_req`.
    pub(super) const FIRST: Range<usize> = 0..4;
    pub(super) const RANGE: Range<usize> = 4..8;
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

    fn parse(b: &[u8]) -> NotifyRange {
        NotifyRange { first: u32_at(b, field::FIRST), range: u32_at(b, field::RANGE) }
    }

    fn emit(&self, b: &mut [u8]) {
        put_u32(b, field::FIRST, self.first);
        put_u32(b, field::RANGE, self.range);
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
        let (idx_n, val_n) = (u32_at(data, field::IDX_NUM) as usize, u32_at(data, field::VAL_NUM) as usize);
        let expected = CTL_HDRLEN.saturating_add(idx_n.saturating_add(val_n).saturating_mul(NOTIFY_REQ_LEN));
        if data.len() != expected {
            return Err(WireError::LengthMismatch { claimed: data.len(), expected }.into());
        }
        let ctl_len = u32_at(data, field::LEN) as usize;
        if ctl_len + CTL_HDRLEN != data.len() {
            return Err(WireError::LengthMismatch { claimed: ctl_len + CTL_HDRLEN, expected: data.len() }.into());
        }
        let mut ranges = data[CTL_HDRLEN..].chunks_exact(NOTIFY_REQ_LEN).map(NotifyRange::parse);
        Ok(CtlMsg {
            group: u32_at(data, field::GROUP),
            idx: ranges.by_ref().take(idx_n).collect(),
            val: ranges.collect(),
        })
    }

    /// The encoded size.
    pub fn buffer_len(&self) -> usize {
        CTL_HDRLEN + (self.idx.len() + self.val.len()) * NOTIFY_REQ_LEN
    }

    /// Writes the request into the first [`CtlMsg::buffer_len`] bytes of `buf`, exactly as the 2.6.x clients
    /// built it.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, self.buffer_len())?;
        put_u32(buf, field::IDX_NUM, self.idx.len() as u32);
        put_u32(buf, field::VAL_NUM, self.val.len() as u32);
        put_u32(buf, field::GROUP, self.group);
        put_u32(buf, field::LEN, (self.buffer_len() - CTL_HDRLEN) as u32);
        let slots = buf[CTL_HDRLEN..self.buffer_len()].chunks_exact_mut(NOTIFY_REQ_LEN);
        for (r, b) in self.idx.iter().chain(&self.val).zip(slots) {
            r.emit(b);
        }
        Ok(())
    }

    /// Encodes to bytes (see [`CtlMsg::emit`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v).expect("sized by buffer_len");
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
        assert!(m.emit(&mut [0; 39]).is_err(), "emit checks the buffer");
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
}
