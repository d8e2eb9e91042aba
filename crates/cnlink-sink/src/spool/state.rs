//! The spool's durable state: the acknowledged cursor and the loss counters, in one small file replaced
//! atomically (written to `state.tmp`, then renamed over `state`).
//!
//! ```text
//!  0  8  magic               "CNLSTAT1"
//!  8  8  acked_seq           every record with seq <= this is acknowledged or gone
//! 16  8  evicted_through     the highest seq dropped by eviction (records <= it are never published)
//! 24  8  boot_first_seq      the first seq of the current boot's records
//! 32  8  evicted             records of the current boot dropped by eviction before their ack
//! 40  8  evicted_other_boot  records of earlier boots dropped by eviction
//! 48  8  torn                records lost to a torn or damaged record (each one sequence number)
//! 56  8  write_dropped       records dropped because a write failed, e.g. a full disk (no sequence number used)
//! 64  8  published           publishes sent for the current boot's records (repeats included)
//! 72  8  acked               the current boot's records acknowledged
//! 80  8  sent_limit          no record above this was ever sent (raised, and written, before sending)
//! 88  8  evicted_unconfirmed records of the current boot evicted after a publish whose ack never came
//! 96  2  boot_len            bytes of the boot id
//! 98  .  boot id (UTF-8)
//!  .  4  crc32c              CRC32C of every byte above
//! ```
//!
//! All integers are little-endian.

use super::record::RecordError;

const STATE_MAGIC: [u8; 8] = *b"CNLSTAT1";
const FIXED_LEN: usize = 98;

/// The spool's durable counters and cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolState {
    /// Every record with a sequence number at most this is acknowledged by the server or gone.
    pub acked_seq: u64,
    /// The highest sequence number dropped by eviction.
    pub evicted_through: u64,
    /// The boot the per-boot counters below belong to.
    pub boot_id: String,
    /// The first sequence number of that boot's records.
    pub boot_first_seq: u64,
    /// That boot's records dropped by eviction before they were acknowledged.
    pub evicted: u64,
    /// Earlier boots' records dropped by eviction before they were acknowledged.
    pub evicted_other_boot: u64,
    /// Records lost to a torn or damaged record (each used one sequence number).
    pub torn: u64,
    /// Records dropped because a write failed, e.g. a full disk (they used no sequence number).
    pub write_dropped: u64,
    /// Publishes sent for that boot's records, repeats included.
    pub published: u64,
    /// That boot's records acknowledged.
    pub acked: u64,
    /// No record with a higher sequence number was ever sent (the reader raises it, durably, before sending).
    pub sent_limit: u64,
    /// That boot's records evicted after a publish whose acknowledgement never came: each may or may not be
    /// in the stream.
    pub evicted_unconfirmed: u64,
}

impl SpoolState {
    /// The file's bytes.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + self.boot_id.len() + 4);
        out.extend_from_slice(&STATE_MAGIC);
        for value in [
            self.acked_seq,
            self.evicted_through,
            self.boot_first_seq,
            self.evicted,
            self.evicted_other_boot,
            self.torn,
            self.write_dropped,
            self.published,
            self.acked,
            self.sent_limit,
            self.evicted_unconfirmed,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&(self.boot_id.len() as u16).to_le_bytes());
        out.extend_from_slice(self.boot_id.as_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<SpoolState, RecordError> {
        if bytes.len() < FIXED_LEN + 4 {
            return Err(RecordError::Truncated { needed: FIXED_LEN + 4, got: bytes.len() });
        }
        if bytes[..8] != STATE_MAGIC {
            return Err(RecordError::BadMagic);
        }
        let u64_at = |at: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(word)
        };
        let boot_len = u16::from_le_bytes([bytes[96], bytes[97]]) as usize;
        let end = FIXED_LEN + boot_len;
        if bytes.len() != end + 4 {
            return Err(RecordError::BadLength(bytes.len()));
        }
        let mut crc = [0; 4];
        crc.copy_from_slice(&bytes[end..end + 4]);
        if crc32c::crc32c(&bytes[..end]) != u32::from_le_bytes(crc) {
            return Err(RecordError::BadCrc);
        }
        Ok(SpoolState {
            acked_seq: u64_at(8),
            evicted_through: u64_at(16),
            boot_first_seq: u64_at(24),
            evicted: u64_at(32),
            evicted_other_boot: u64_at(40),
            torn: u64_at(48),
            write_dropped: u64_at(56),
            published: u64_at(64),
            acked: u64_at(72),
            sent_limit: u64_at(80),
            evicted_unconfirmed: u64_at(88),
            boot_id: std::str::from_utf8(&bytes[FIXED_LEN..end]).map_err(|_| RecordError::BadText)?.to_owned(),
        })
    }

    /// Starts the per-boot counters for a new boot whose records begin at `first_seq`.
    pub fn begin_boot(&mut self, boot_id: &str, first_seq: u64) {
        self.boot_id = boot_id.to_owned();
        self.boot_first_seq = first_seq;
        self.evicted = 0;
        self.evicted_unconfirmed = 0;
        self.torn = 0;
        self.write_dropped = 0;
        self.published = 0;
        self.acked = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_detects_damage() {
        let state = SpoolState {
            acked_seq: 1,
            evicted_through: 2,
            boot_id: "boot".into(),
            boot_first_seq: 3,
            evicted: 4,
            evicted_other_boot: 5,
            torn: 6,
            write_dropped: 7,
            published: 8,
            acked: 9,
            sent_limit: 10,
            evicted_unconfirmed: 11,
        };
        let bytes = state.emit();
        assert_eq!(bytes.len(), 98 + 4 + 4);
        assert_eq!(&bytes[8..16], &1u64.to_le_bytes());
        assert_eq!(SpoolState::parse(&bytes), Ok(state));
        for cut in 0..bytes.len() {
            assert!(SpoolState::parse(&bytes[..cut]).is_err());
        }
        let mut bad = bytes.clone();
        bad[40] ^= 1;
        assert_eq!(SpoolState::parse(&bad), Err(RecordError::BadCrc));
    }
}
