//! The local disk spool: append-only, checksummed segment files between the event source and the network.
//!
//! The writer ([`SpoolWriter`]) is what the monitor's writer thread calls: appends go to a memory buffer and
//! reach the active segment file with one `write` per [`SpoolWriter::flush`] (or when the buffer fills); it never
//! waits for the network. A reader ([`SpoolReader`], the publisher's) reads the records the writer has written,
//! in order, from its own file handles; the publisher then moves the acknowledged cursor with
//! [`SpoolHandle::ack_through`], which deletes segments whose records are all acknowledged.
//!
//! Directory layout (one process per directory):
//!
//! ```text
//! 00000000000000000001.seg   a segment, named by the sequence number of its first record (20 digits)
//! 00000000000000052001.seg   the active segment (the last one)
//! state                      the acknowledged cursor and loss counters (see [`SpoolState`])
//! ```
//!
//! Bounds and losses, every one counted in [`SpoolState`] and reported by the ledger:
//! - the spool holds at most `max_bytes`; past it the oldest sealed segment is deleted, and its records that
//!   were not yet acknowledged are counted as evicted (a segment holding records in flight waits until they
//!   are acknowledged or their publish fails);
//! - on open, a torn or damaged last record is detected by its length or checksum, cut off, counted as torn,
//!   and its sequence number is skipped (so it shows as one missing number, accounted for);
//! - a failed write (a full disk: `ENOSPC`) drops the buffered records, counts them as `write_dropped`, cuts the
//!   file back to its last whole record and reuses their sequence numbers; the writer tries again at the next
//!   flush, so it goes on when space returns.

mod reader;
pub mod record;
mod shared;
pub mod state;
mod writer;

pub use reader::{SpoolReader, SpooledRecord};
pub use shared::{SpoolHandle, SpoolStats};
pub use state::SpoolState;
pub use writer::{open, AppendError, Recovery, SpoolWriter};

use std::path::PathBuf;
use std::time::Duration;

/// When the spool calls `fdatasync` on its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every flush (and every state write).
    Always,
    /// At a flush when at least this long has passed since the last sync, and when a segment is sealed.
    Every(Duration),
    /// Never: the OS writes back when it likes (records survive a crash of cnlink, not of the machine).
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    /// `always`, `never` (or `os`), or a period in milliseconds (`100` or `100ms`).
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "never" | "os" => Ok(FsyncPolicy::Never),
            _ => text
                .trim_end_matches("ms")
                .parse::<u64>()
                .map(|ms| FsyncPolicy::Every(Duration::from_millis(ms)))
                .map_err(|_| format!("fsync policy {text:?}: expected always, never, os or N ms")),
        }
    }
}

/// How a spool is laid out and bounded.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The directory holding the segments and the state file (created if missing).
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it holds this many bytes (default 64 MiB).
    pub segment_bytes: u64,
    /// The most bytes the segments may hold before the oldest are evicted (default 1 GiB; at least two
    /// segments' worth).
    pub max_bytes: u64,
    /// When files are synced to disk.
    pub fsync: FsyncPolicy,
    /// The writer's buffer: a flush happens by itself when an append would overflow it (default 256 KiB).
    pub buffer_bytes: usize,
}

impl SpoolOptions {
    /// The defaults for a spool in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SpoolOptions {
            dir: dir.into(),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            fsync: FsyncPolicy::Every(Duration::from_millis(1000)),
            buffer_bytes: 256 << 10,
        }
    }
}

/// The host and boot the records written now belong to (the caller reads them; the sink stores them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A stable id of the machine (e.g. `/etc/machine-id`).
    pub host_id: String,
    /// The id of the current boot (e.g. `/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
}

/// A spool that cannot be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the OS.
        source: std::io::Error,
    },
    /// Options or inputs that cannot work.
    #[error("spool: {0}")]
    Invalid(String),
}

impl SpoolError {
    /// True when the error is a full disk (or quota): the records were counted as `write_dropped`.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SpoolError::Io { source, .. } if matches!(source.raw_os_error(), Some(28) | Some(122)))
    }
}

pub(crate) fn io_error(op: &'static str, path: &std::path::Path, source: std::io::Error) -> SpoolError {
    SpoolError::Io { op, path: path.to_owned(), source }
}

pub(crate) fn segment_path(dir: &std::path::Path, base_seq: u64) -> PathBuf {
    dir.join(format!("{base_seq:020}.seg"))
}
