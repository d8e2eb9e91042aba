//! The wire layer's error type.

/// Why a byte buffer could not be decoded.
///
/// Small and `Copy`, so it can be matched on and carried in counters. Every decoder of the wire layer returns
/// one of these instead of panicking or reading past its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The buffer ends before the structure does.
    #[error("truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were there.
        got: usize,
    },
    /// `nlmsg_len` is below the header size or beyond the bytes received.
    #[error("bad nlmsg_len {nlmsg_len} for {available} available bytes")]
    BadNlmsgLen {
        /// The length the header claims.
        nlmsg_len: u32,
        /// Bytes left in the datagram.
        available: usize,
    },
    /// `cn_msg.len` claims more data than the netlink payload holds.
    #[error("cn_msg.len {cn_len} does not fit in a {payload}-byte netlink payload")]
    BadCnLen {
        /// The data length the `cn_msg` header claims.
        cn_len: u16,
        /// Bytes of netlink payload that hold the header and its data.
        payload: usize,
    },
    /// A payload is larger than the field that must describe it can say.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// Length asked for.
        len: usize,
        /// Largest length the format allows.
        max: usize,
    },
    /// A length field disagrees with the counts it should equal.
    #[error("inconsistent lengths: header says {claimed}, contents need {expected}")]
    LengthMismatch {
        /// The length the header claims.
        claimed: usize,
        /// The length the counts imply.
        expected: usize,
    },
}

/// Checks that `buf` holds at least `needed` bytes.
pub fn need(buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated { needed, got: buf.len() })
    } else {
        Ok(())
    }
}
