//! Native-endian field access over unaligned byte slices, for this crate's views and for other wire formats
//! built on the connector (the bus's control messages).
//!
//! Callers check lengths first ([`need`], or each view's `check_len`); these helpers index, so a missed check is a
//! bug that panics in tests rather than a silent read past the buffer.

use core::ops::Range;

pub use super::error::need;

/// Reads a native-endian `u16` at `range` (two bytes).
#[inline]
pub fn u16_at(buf: &[u8], range: Range<usize>) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[range]);
    u16::from_ne_bytes(b)
}

/// Reads a native-endian `u32` at `range` (four bytes).
#[inline]
pub fn u32_at(buf: &[u8], range: Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[range]);
    u32::from_ne_bytes(b)
}

/// Reads a native-endian `i32` at `range` (four bytes).
#[inline]
pub fn i32_at(buf: &[u8], range: Range<usize>) -> i32 {
    u32_at(buf, range) as i32
}

/// Reads a native-endian `u64` at `range` (eight bytes), whatever its alignment.
#[inline]
pub fn u64_at(buf: &[u8], range: Range<usize>) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[range]);
    u64::from_ne_bytes(b)
}

/// Writes a native-endian `u16` at `range`.
#[inline]
pub fn put_u16(buf: &mut [u8], range: Range<usize>, v: u16) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian `u32` at `range`.
#[inline]
pub fn put_u32(buf: &mut [u8], range: Range<usize>, v: u32) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian `u64` at `range`.
#[inline]
pub fn put_u64(buf: &mut [u8], range: Range<usize>, v: u64) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}
