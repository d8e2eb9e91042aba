//! pcapng numbers (draft-ietf-opsawg-pcapng): block types, option codes, the link type, timestamp resolutions.
//!
//! ```text
//! every block                          offset  size
//!   block type                              0     4   section byte order
//!   block total length                      4     4   multiple of 4, >= 12, counts all of the block
//!   body                                    8     n   padded to 4
//!   block total length (again)          8 + n     4
//! options (in SHB, IDB, EPB, ...)
//!   code u16, length u16, value padded to 4; the list ends with opt_endofopt (0, 0)
//! ```

/// Section Header Block; the same bytes in either byte order.
pub const BLOCK_SHB: u32 = 0x0A0D_0D0A;
/// Interface Description Block.
pub const BLOCK_IDB: u32 = 0x0000_0001;
/// Enhanced Packet Block.
pub const BLOCK_EPB: u32 = 0x0000_0006;
/// Custom Block that rewriters may copy into new files.
pub const BLOCK_CUSTOM_COPY: u32 = 0x0000_0BAD;
/// Custom Block that rewriters should not copy.
pub const BLOCK_CUSTOM_NO_COPY: u32 = 0x4000_0BAD;
/// The SHB's byte-order magic, written in the section's byte order.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

/// The smallest block: type, length and trailer.
pub const MIN_BLOCK_LEN: u32 = 12;
/// The largest block this crate writes or reads (1 GiB): a corrupted length cannot make a reader allocate more.
pub const MAX_BLOCK_LEN: u32 = 1 << 30;

/// `opt_endofopt`: ends an option list.
pub const OPT_ENDOFOPT: u16 = 0;
/// `opt_comment`.
pub const OPT_COMMENT: u16 = 1;
/// `shb_hardware`.
pub const SHB_HARDWARE: u16 = 2;
/// `shb_os`.
pub const SHB_OS: u16 = 3;
/// `shb_userappl`.
pub const SHB_USERAPPL: u16 = 4;
/// `if_name`.
pub const IF_NAME: u16 = 2;
/// `if_description`.
pub const IF_DESCRIPTION: u16 = 3;
/// `if_tsresol`.
pub const IF_TSRESOL: u16 = 9;
/// `if_tsoffset`.
pub const IF_TSOFFSET: u16 = 14;

/// `LINKTYPE_NETLINK`: a 16-byte cooked header, then the netlink datagram.
pub const LINKTYPE_NETLINK: u16 = 253;

/// `if_tsresol` for nanoseconds (10^-9), which this crate writes.
pub const TSRESOL_NANOS: u8 = 9;
/// `if_tsresol` when the option is absent: microseconds.
pub const TSRESOL_DEFAULT: u8 = 6;

/// Converts a timestamp in `if_tsresol` units (10^-n, or 2^-n when the high bit is set) to nanoseconds,
/// saturating at `u64::MAX`.
pub fn ticks_to_nanos(ticks: u64, tsresol: u8) -> u64 {
    let n = u32::from(tsresol & 0x7f);
    let ns: u128 = if tsresol & 0x80 != 0 {
        // 2^-n seconds per tick.
        if n >= 128 {
            0
        } else {
            (u128::from(ticks) * 1_000_000_000) >> n
        }
    } else if n <= 9 {
        u128::from(ticks) * 10u128.pow(9 - n)
    } else if n - 9 <= 38 {
        u128::from(ticks) / 10u128.pow(n - 9)
    } else {
        0
    };
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The number of bytes `len` takes once padded to 4.
pub(crate) const fn pad4(len: usize) -> usize {
    (len + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_conversions() {
        assert_eq!(ticks_to_nanos(5, 9), 5);
        assert_eq!(ticks_to_nanos(5, 6), 5_000);
        assert_eq!(ticks_to_nanos(5, 0), 5_000_000_000);
        assert_eq!(ticks_to_nanos(5_000, 12), 5);
        assert_eq!(ticks_to_nanos(1 << 20, 0x80 | 20), 1_000_000_000);
        assert_eq!(ticks_to_nanos(u64::MAX, 0), u64::MAX);
        assert_eq!(ticks_to_nanos(u64::MAX, 0x7f), 0);
        assert_eq!(ticks_to_nanos(u64::MAX, 0xff), 0);
    }

    #[test]
    fn padding() {
        assert_eq!([0, 1, 3, 4, 5].map(pad4), [0, 4, 4, 4, 8]);
    }
}
