//! Native-endian field access over unaligned byte slices.
//!
//! Callers check lengths first (each view's `check_len`); these helpers index, so a missed check is a bug that
//! panics in tests rather than a silent read past the buffer.

use core::ops::Range;

/// Reads a native-endian `u16` at `range` (two bytes).
#[inline]
pub(crate) fn u16_at(buf: &[u8], range: Range<usize>) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&buf[range]);
    u16::from_ne_bytes(b)
}

/// Reads a native-endian `u32` at `range` (four bytes).
#[inline]
pub(crate) fn u32_at(buf: &[u8], range: Range<usize>) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[range]);
    u32::from_ne_bytes(b)
}

/// Reads a native-endian `i32` at `range` (four bytes).
#[inline]
pub(crate) fn i32_at(buf: &[u8], range: Range<usize>) -> i32 {
    u32_at(buf, range) as i32
}

/// Reads a native-endian `u64` at `range` (eight bytes), whatever its alignment.
#[inline]
pub(crate) fn u64_at(buf: &[u8], range: Range<usize>) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[range]);
    u64::from_ne_bytes(b)
}

/// Writes a native-endian `u16` at `range`.
#[inline]
pub(crate) fn put_u16(buf: &mut [u8], range: Range<usize>, v: u16) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian `u32` at `range`.
#[inline]
pub(crate) fn put_u32(buf: &mut [u8], range: Range<usize>, v: u32) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}

/// Writes a native-endian `u64` at `range`.
#[inline]
pub(crate) fn put_u64(buf: &mut [u8], range: Range<usize>, v: u64) {
    buf[range].copy_from_slice(&v.to_ne_bytes());
}
