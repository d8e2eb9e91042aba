//! The spool's bytes: segment headers and records (no IO).
//!
//! All integers are little-endian, whatever the host. A segment file is one [`SegmentHeader`] followed by
//! records, each framed so that a reader can tell a whole record from a torn one:
//!
//! ```text
//! segment header
//!  0  8  magic      "CNLSPOOL"
//!  8  2  version    1
//! 10  2  host_len   bytes of host id
//! 12  2  boot_len   bytes of boot id
//! 14  2  reserved   0
//! 16  8  base_seq   sink sequence of the segment's first record
//! 24  .  host id, then boot id (UTF-8)
//!  .  4  crc32c     CRC32C of every byte above
//!
//! record
//!  0  4  body_len   bytes after this 8-byte prefix (10 + token_len + payload bytes)
//!  4  4  crc32c     CRC32C of the body (bytes 8..8+body_len)
//!  8  8  seq        sink sequence number
//! 16  1  kind       1 event, 2 ledger
//! 17  1  token_len  bytes of the subject token
//! 18  .  token      the subject's last token (`fork`, `exec`, ..., `ledger`), ASCII
//!  .  .  payload    the JSON object published
//! ```

/// The 8 bytes every segment file starts with.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CNLSPOOL";
/// The segment format version this crate writes and reads.
pub const SEGMENT_VERSION: u16 = 1;
/// Bytes of a segment header before the host and boot ids.
pub const SEGMENT_FIXED_LEN: usize = 24;
/// Bytes of a record before its body: `body_len` and `crc32c`.
pub const RECORD_PREFIX_LEN: usize = 8;
/// Bytes of a record body before the token: `seq`, `kind`, `token_len`.
pub const RECORD_BODY_FIXED_LEN: usize = 10;
/// The largest record body accepted (16 MiB); a larger `body_len` is taken as damage.
pub const MAX_BODY_LEN: usize = 16 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// A process event.
    Event,
    /// A ledger record.
    Ledger,
    /// A kind this version does not know (published as is).
    Unknown(u8),
}

impl RecordKind {
    /// The byte stored in the record.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::Event => 1,
            RecordKind::Ledger => 2,
            RecordKind::Unknown(n) => n,
        }
    }

    /// The kind for a stored byte.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RecordKind::Event,
            2 => RecordKind::Ledger,
            n => RecordKind::Unknown(n),
        }
    }
}

/// Why bytes are not a whole record or header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the framing says (a torn tail when at the end of a file).
    #[error("truncated: {needed} bytes needed, {got} present")]
    Truncated {
        /// Bytes the record or header needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A length field out of range.
    #[error("impossible length {0}")]
    BadLength(usize),
    /// The checksum does not match the bytes.
    #[error("checksum mismatch")]
    BadCrc,
    /// The magic or version of a segment header is not ours.
    #[error("not a cnlink spool segment (or an unknown version)")]
    BadMagic,
    /// An id or token that is not valid UTF-8.
    #[error("invalid UTF-8 in an id or token")]
    BadText,
}

/// One record, borrowed from the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Sink sequence number.
    pub seq: u64,
    /// Event or ledger.
    pub kind: RecordKind,
    /// The subject's last token.
    pub token: &'a str,
    /// The JSON payload.
    pub payload: &'a [u8],
}

impl<'a> Record<'a> {
    /// Bytes this record takes in a segment.
    pub fn encoded_len(&self) -> usize {
        RECORD_PREFIX_LEN + RECORD_BODY_FIXED_LEN + self.token.len() + self.payload.len()
    }

    /// Appends the record's bytes to `out`. The token must be at most 255 bytes and the body at most
    /// [`MAX_BODY_LEN`] (the spool checks both before calling this).
    pub fn emit(&self, out: &mut Vec<u8>) {
        emit_record(out, self.seq, self.kind, self.token, &[self.payload]);
    }

    /// Reads the record at the start of `bytes`; returns it and the bytes it took.
    pub fn parse(bytes: &'a [u8]) -> Result<(Record<'a>, usize), RecordError> {
        let body_len =
            read_u32(bytes, 0).ok_or(RecordError::Truncated { needed: RECORD_PREFIX_LEN, got: bytes.len() })? as usize;
        if !(RECORD_BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
            return Err(RecordError::BadLength(body_len));
        }
        let total = RECORD_PREFIX_LEN + body_len;
        if bytes.len() < total {
            return Err(RecordError::Truncated { needed: total, got: bytes.len() });
        }
        let crc = read_u32(bytes, 4).unwrap_or(0);
        let body = &bytes[RECORD_PREFIX_LEN..total];
        if crc32c::crc32c(body) != crc {
            return Err(RecordError::BadCrc);
        }
        let seq = read_u64(body, 0).unwrap_or(0);
        let kind = RecordKind::from_code(body[8]);
        let token_len = body[9] as usize;
        let token_end = RECORD_BODY_FIXED_LEN + token_len;
        if token_end > body.len() {
            return Err(RecordError::BadLength(token_len));
        }
        let token = std::str::from_utf8(&body[RECORD_BODY_FIXED_LEN..token_end]).map_err(|_| RecordError::BadText)?;
        let record = Record { seq, kind, token, payload: &body[token_end..] };
        Ok((record, total))
    }

    /// The sequence number of a record whose prefix and first body bytes are present, even if the rest is torn
    /// (used to skip a torn record's number on recovery). `None` when too few bytes survive.
    pub fn peek_seq(bytes: &[u8]) -> Option<u64> {
        read_u64(bytes, RECORD_PREFIX_LEN)
    }
}

/// Appends a record whose payload is the concatenation of `payload_parts` (so a caller can add fields to a
/// payload without copying it first). Same limits as [`Record::emit`]; returns the bytes appended.
pub fn emit_record(out: &mut Vec<u8>, seq: u64, kind: RecordKind, token: &str, payload_parts: &[&[u8]]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind.code());
    out.push(token.len() as u8);
    out.extend_from_slice(token.as_bytes());
    for part in payload_parts {
        out.extend_from_slice(part);
    }
    let body_len = (out.len() - start - RECORD_PREFIX_LEN) as u32;
    let crc = crc32c::crc32c(&out[start + RECORD_PREFIX_LEN..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// The header that starts every segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sink sequence of the segment's first record.
    pub base_seq: u64,
    /// The host id of every record in the segment.
    pub host_id: String,
    /// The boot id of every record in the segment.
    pub boot_id: String,
}

impl SegmentHeader {
    /// Bytes the header takes.
    pub fn encoded_len(&self) -> usize {
        SEGMENT_FIXED_LEN + self.host_id.len() + self.boot_id.len() + 4
    }

    /// Appends the header's bytes to `out` (ids of at most 65535 bytes; the spool checks).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&SEGMENT_MAGIC);
        out.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.host_id.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.boot_id.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.base_seq.to_le_bytes());
        out.extend_from_slice(self.host_id.as_bytes());
        out.extend_from_slice(self.boot_id.as_bytes());
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Reads the header at the start of a segment file; returns it and the bytes it took.
    pub fn parse(bytes: &[u8]) -> Result<(SegmentHeader, usize), RecordError> {
        if bytes.len() < SEGMENT_FIXED_LEN {
            return Err(RecordError::Truncated { needed: SEGMENT_FIXED_LEN, got: bytes.len() });
        }
        if bytes[0..8] != SEGMENT_MAGIC || read_u16(bytes, 8) != Some(SEGMENT_VERSION) {
            return Err(RecordError::BadMagic);
        }
        let host_len = read_u16(bytes, 10).unwrap_or(0) as usize;
        let boot_len = read_u16(bytes, 12).unwrap_or(0) as usize;
        let ids_end = SEGMENT_FIXED_LEN + host_len + boot_len;
        let total = ids_end + 4;
        if bytes.len() < total {
            return Err(RecordError::Truncated { needed: total, got: bytes.len() });
        }
        if read_u32(bytes, ids_end) != Some(crc32c::crc32c(&bytes[..ids_end])) {
            return Err(RecordError::BadCrc);
        }
        let text = |range: std::ops::Range<usize>| {
            std::str::from_utf8(&bytes[range]).map(str::to_owned).map_err(|_| RecordError::BadText)
        };
        let header = SegmentHeader {
            base_seq: read_u64(bytes, 16).unwrap_or(0),
            host_id: text(SEGMENT_FIXED_LEN..SEGMENT_FIXED_LEN + host_len)?,
            boot_id: text(SEGMENT_FIXED_LEN + host_len..ids_end)?,
        };
        Ok((header, total))
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        Record { seq: 7, kind: RecordKind::Event, token: "exec", payload: b"{\"a\":1}" }.emit(&mut out);
        out
    }

    #[test]
    fn record_bytes_are_the_documented_layout() {
        let bytes = sample();
        assert_eq!(bytes.len(), 8 + 10 + 4 + 7);
        assert_eq!(&bytes[0..4], &(10u32 + 4 + 7).to_le_bytes());
        assert_eq!(&bytes[4..8], &crc32c::crc32c(&bytes[8..]).to_le_bytes());
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        assert_eq!(bytes[16], 1);
        assert_eq!(bytes[17], 4);
        assert_eq!(&bytes[18..22], b"exec");
        assert_eq!(&bytes[22..], b"{\"a\":1}");
    }

    #[test]
    fn record_round_trips() {
        let bytes = sample();
        let (record, used) = Record::parse(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(record.encoded_len(), bytes.len());
        assert_eq!(record.seq, 7);
        assert_eq!(record.kind, RecordKind::Event);
        assert_eq!(record.token, "exec");
        assert_eq!(record.payload, b"{\"a\":1}");
    }

    #[test]
    fn every_torn_prefix_is_truncated_never_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(matches!(Record::parse(&bytes[..cut]), Err(RecordError::Truncated { .. })), "cut at {cut}");
        }
        assert_eq!(Record::peek_seq(&bytes[..16]), Some(7));
        assert_eq!(Record::peek_seq(&bytes[..15]), None);
    }

    #[test]
    fn a_flipped_bit_is_a_crc_error() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(Record::parse(&bytes), Err(RecordError::BadCrc));
    }

    #[test]
    fn impossible_lengths_are_errors() {
        let mut bytes = sample();
        bytes[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(Record::parse(&bytes), Err(RecordError::BadLength(3)));
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Record::parse(&bytes), Err(RecordError::BadLength(_))));
        // A token longer than the body.
        let mut bytes = sample();
        bytes[17] = 200;
        let crc = crc32c::crc32c(&bytes[8..]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Record::parse(&bytes), Err(RecordError::BadLength(200)));
    }

    #[test]
    fn unknown_kinds_are_data() {
        assert_eq!(RecordKind::from_code(9), RecordKind::Unknown(9));
        assert_eq!(RecordKind::Unknown(9).code(), 9);
    }

    #[test]
    fn segment_header_round_trips_and_checks() {
        let header = SegmentHeader { base_seq: 42, host_id: "web01".into(), boot_id: "b00t".into() };
        let mut bytes = Vec::new();
        header.emit(&mut bytes);
        assert_eq!(bytes.len(), header.encoded_len());
        assert_eq!(&bytes[0..8], b"CNLSPOOL");
        let (back, used) = SegmentHeader::parse(&bytes).unwrap();
        assert_eq!((back, used), (header, bytes.len()));
        for cut in 0..bytes.len() {
            assert!(SegmentHeader::parse(&bytes[..cut]).is_err());
        }
        bytes[30] ^= 1;
        assert_eq!(SegmentHeader::parse(&bytes), Err(RecordError::BadCrc));
        bytes[0] = b'X';
        assert_eq!(SegmentHeader::parse(&bytes), Err(RecordError::BadMagic));
    }
}
