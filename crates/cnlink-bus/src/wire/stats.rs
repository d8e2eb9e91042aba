//! A STATS reply body: `u32 count`, then `count` native-endian `u64` counters, in the order of
//! [`crate::BusCounters::NAMES`]. New counters are appended, so a client maps values by position and accepts more than
//! it knows.

use cnlink::wire::bytes::{need, put_u32, put_u64, u32_at, u64_at};
use cnlink::wire::WireError;

use super::CtlError;

/// The count before the counters.
const COUNT: core::ops::Range<usize> = 0..4;
/// Size of one counter.
const COUNTER_LEN: usize = 8;

/// Encodes a STATS body.
pub fn stats_bytes(counters: &[u64]) -> Vec<u8> {
    let mut v = vec![0; COUNT.end + counters.len() * COUNTER_LEN];
    put_u32(&mut v, COUNT, counters.len() as u32);
    for (c, b) in counters.iter().zip(v[COUNT.end..].chunks_exact_mut(COUNTER_LEN)) {
        put_u64(b, 0..COUNTER_LEN, *c);
    }
    v
}

/// Decodes a STATS body.
pub fn parse_stats(b: &[u8]) -> Result<Vec<u64>, CtlError> {
    need(b, COUNT.end)?;
    let n = u32_at(b, COUNT) as usize;
    let expected = COUNT.end.saturating_add(n.saturating_mul(COUNTER_LEN));
    if b.len() != expected {
        return Err(WireError::LengthMismatch { claimed: b.len(), expected }.into());
    }
    Ok(b[COUNT.end..].chunks_exact(COUNTER_LEN).map(|c| u64_at(c, 0..COUNTER_LEN)).collect())
}
