//! Byte orders: a pcapng section is in the order its Section Header Block says; cnlink's records are always
//! little-endian.

/// The byte order of a pcapng section (or of captured datagrams).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Least significant byte first (x86, arm64, riscv).
    Little,
    /// Most significant byte first (s390x, some ppc64).
    Big,
}

impl ByteOrder {
    /// The order of the machine this code runs on.
    pub const NATIVE: ByteOrder = if cfg!(target_endian = "big") { ByteOrder::Big } else { ByteOrder::Little };

    /// Reads a `u16` at `at`; `None` when the bytes are not there.
    pub(crate) fn u16_at(self, buf: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = buf.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            ByteOrder::Little => u16::from_le_bytes(b),
            ByteOrder::Big => u16::from_be_bytes(b),
        })
    }

    /// Reads a `u32` at `at`; `None` when the bytes are not there.
    pub(crate) fn u32_at(self, buf: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            ByteOrder::Little => u32::from_le_bytes(b),
            ByteOrder::Big => u32::from_be_bytes(b),
        })
    }

    /// Reads a `u64` at `at`; `None` when the bytes are not there.
    pub(crate) fn u64_at(self, buf: &[u8], at: usize) -> Option<u64> {
        let b: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            ByteOrder::Little => u64::from_le_bytes(b),
            ByteOrder::Big => u64::from_be_bytes(b),
        })
    }

    /// Appends a `u16`.
    pub(crate) fn put_u16(self, out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        });
    }

    /// Appends a `u32`.
    pub(crate) fn put_u32(self, out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        });
    }

    /// Appends a `u64`.
    pub(crate) fn put_u64(self, out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::ByteOrder;

    #[test]
    fn reads_and_writes_both_orders() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let mut v = Vec::new();
            order.put_u16(&mut v, 0x0102);
            order.put_u32(&mut v, 0x0304_0506);
            order.put_u64(&mut v, 0x0708_090a_0b0c_0d0e);
            assert_eq!(order.u16_at(&v, 0), Some(0x0102));
            assert_eq!(order.u32_at(&v, 2), Some(0x0304_0506));
            assert_eq!(order.u64_at(&v, 6), Some(0x0708_090a_0b0c_0d0e));
            assert_eq!(order.u64_at(&v, 7), None);
            assert_eq!(order.u32_at(&v, usize::MAX - 1), None);
        }
        let mut v = Vec::new();
        ByteOrder::Big.put_u32(&mut v, 1);
        assert_eq!(v, [0, 0, 0, 1]);
    }
}
