//! What the writer and the publisher share: the segment list, the written frontier, the cursor and the
//! counters, behind one mutex taken once per flush or batch (never per record).

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{io_error, FsyncPolicy, SpoolError, SpoolReader, SpoolState};

/// One segment file as the spool tracks it.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) base_seq: u64,
    /// The last record's sequence number (`base_seq - 1` while empty).
    pub(crate) last_seq: u64,
    pub(crate) bytes: u64,
    pub(crate) host_id: Arc<str>,
    pub(crate) boot_id: Arc<str>,
    pub(crate) path: PathBuf,
}

impl Segment {
    /// Records in this segment with a sequence number above `floor`.
    pub(crate) fn records_above(&self, floor: u64) -> u64 {
        let from = floor.saturating_add(1).max(self.base_seq);
        (self.last_seq + 1).saturating_sub(from)
    }
}

pub(crate) struct Inner {
    pub(crate) segments: VecDeque<Segment>,
    /// The highest sequence number whose record is whole in a file (readable).
    pub(crate) committed_seq: u64,
    /// The highest sequence number the reader handed to the network and that is not yet acknowledged.
    pub(crate) sent_through: u64,
    /// No record above this was ever sent, by this process or an earlier one.
    pub(crate) sent_max: u64,
    pub(crate) state: SpoolState,
    pub(crate) state_dirty: bool,
    pub(crate) total_bytes: u64,
    pub(crate) high_water_bytes: u64,
    pub(crate) eviction_deferred: u64,
    pub(crate) write_errors: u64,
    pub(crate) state_write_errors: u64,
    pub(crate) last_error: Option<String>,
}

impl Inner {
    /// Records at or below this are acknowledged or evicted: never to be published again.
    pub(crate) fn floor(&self) -> u64 {
        self.state.acked_seq.max(self.state.evicted_through)
    }
}

pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) fsync: FsyncPolicy,
    pub(crate) max_bytes: u64,
    pub(crate) boot_id: String,
    /// Serialises state-file writes; taken before `inner` when both are needed.
    pub(crate) state_file: Mutex<()>,
    pub(crate) inner: Mutex<Inner>,
    #[allow(clippy::type_complexity)]
    pub(crate) waker: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain counters behind; they stay usable.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn wake(&self) {
        if let Some(wake) = self.waker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
            wake();
        }
    }

    /// Writes the current state to `state` (through `state.tmp` and a rename). On failure the state stays
    /// dirty in memory and the error is counted; the next call tries again.
    pub(crate) fn persist(&self) -> Result<(), SpoolError> {
        let _file = self.state_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = {
            let mut inner = self.lock();
            if !inner.state_dirty {
                return Ok(());
            }
            inner.state_dirty = false;
            inner.state.emit()
        };
        let result = write_state(&self.dir, &bytes, self.fsync != FsyncPolicy::Never);
        if let Err(error) = &result {
            let mut inner = self.lock();
            inner.state_dirty = true;
            inner.state_write_errors += 1;
            inner.last_error = Some(error.to_string());
        }
        result
    }

    /// Deletes files, counting failures (a file that cannot be deleted is only wasted space).
    pub(crate) fn remove_files(&self, paths: Vec<PathBuf>) {
        for path in paths {
            if let Err(error) = fs::remove_file(&path) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    self.lock().last_error = Some(format!("spool: remove {}: {error}", path.display()));
                }
            }
        }
    }
}

fn write_state(dir: &Path, bytes: &[u8], sync: bool) -> Result<(), SpoolError> {
    let tmp = dir.join("state.tmp");
    let path = dir.join("state");
    let mut file = fs::File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
    file.write_all(bytes).map_err(|e| io_error("write", &tmp, e))?;
    if sync {
        file.sync_data().map_err(|e| io_error("fsync", &tmp, e))?;
    }
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| io_error("rename", &path, e))?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error("fsync", dir, e))
}

/// The publisher's side of a spool: acknowledgements, counters and readers. Cheap to clone.
#[derive(Clone)]
pub struct SpoolHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A snapshot of a spool's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// The durable cursor and loss counters.
    pub state: SpoolState,
    /// The highest sequence number written to a file.
    pub committed_seq: u64,
    /// Records written and not yet acknowledged (nor evicted).
    pub lag_records: u64,
    /// Bytes of the segments that still hold records not yet acknowledged (an upper bound of the lag in bytes).
    pub lag_bytes: u64,
    /// Bytes of all segment files.
    pub spool_bytes: u64,
    /// The most bytes the segments held at once since the spool was opened.
    pub high_water_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Times an eviction waited for records in flight.
    pub eviction_deferred: u64,
    /// Failed segment writes (their records are counted in `state.write_dropped`).
    pub write_errors: u64,
    /// Failed state-file writes (retried).
    pub state_write_errors: u64,
    /// The last error met, for a status line.
    pub last_error: Option<String>,
}

impl SpoolHandle {
    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The boot whose records the per-boot counters count.
    pub fn boot_id(&self) -> &str {
        &self.shared.boot_id
    }

    /// A reader positioned at the first record not yet acknowledged.
    pub fn reader(&self) -> SpoolReader {
        SpoolReader::new(self.shared.clone())
    }

    /// Calls `wake` (from the writer's thread) each time new records are readable.
    pub fn set_waker(&self, wake: impl Fn() + Send + Sync + 'static) {
        *self.shared.waker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Box::new(wake));
    }

    /// Counts `n` publishes of the current boot's records.
    pub fn note_published(&self, n: u64) {
        let mut inner = self.shared.lock();
        inner.state.published += n;
        inner.state_dirty = true;
    }

    /// Every record up to `seq` is acknowledged (`current_boot` of them belong to the current boot); deletes the
    /// sealed segments that hold only acknowledged records. The cursor reaches the disk at the next
    /// [`persist`](Self::persist).
    pub fn ack_through(&self, seq: u64, current_boot: u64) {
        let mut doomed = Vec::new();
        {
            let mut inner = self.shared.lock();
            if seq > inner.state.acked_seq {
                inner.state.acked_seq = seq;
            }
            inner.state.acked += current_boot;
            if inner.sent_through <= seq {
                inner.sent_through = 0;
            }
            inner.state_dirty = true;
            let floor = inner.floor();
            while inner.segments.len() > 1 && inner.segments[0].last_seq <= floor {
                if let Some(segment) = inner.segments.pop_front() {
                    inner.total_bytes -= segment.bytes;
                    doomed.push(segment.path);
                }
            }
        }
        self.shared.remove_files(doomed);
    }

    /// Records in flight are given up (their publish failed): they may be evicted again, and are read again.
    pub fn release_in_flight(&self) {
        self.shared.lock().sent_through = 0;
    }

    /// Writes the cursor and counters to disk if they changed.
    pub fn persist(&self) -> Result<(), SpoolError> {
        self.shared.persist()
    }

    /// The counters now.
    pub fn stats(&self) -> SpoolStats {
        let inner = self.shared.lock();
        let floor = inner.floor();
        let lag_bytes = inner.segments.iter().filter(|s| s.last_seq > floor).map(|s| s.bytes).sum();
        let lag_records = inner.segments.iter().map(|s| s.records_above(floor)).sum();
        SpoolStats {
            state: inner.state.clone(),
            committed_seq: inner.committed_seq,
            lag_records,
            lag_bytes,
            spool_bytes: inner.total_bytes,
            high_water_bytes: inner.high_water_bytes,
            segments: inner.segments.len(),
            eviction_deferred: inner.eviction_deferred,
            write_errors: inner.write_errors,
            state_write_errors: inner.state_write_errors,
            last_error: inner.last_error.clone(),
        }
    }
}
