//! Opening a spool (recovery) and the writer side.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::record::{emit_record, Record, RecordKind, SegmentHeader, MAX_BODY_LEN};
use super::shared::{sync_dir, Inner, Segment, Shared, SpoolHandle};
use super::{io_error, segment_path, FsyncPolicy, Identity, SpoolError, SpoolOptions, SpoolState};

/// What opening a spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files found.
    pub segments: usize,
    /// Records waiting to be published (written, not acknowledged nor evicted).
    pub pending_records: u64,
    /// Torn or damaged records cut off the last segment now (also added to the state's `torn`).
    pub torn: u64,
    /// Segment files whose header was unreadable (removed).
    pub bad_segments: u64,
    /// The state file was missing or unreadable and was started afresh.
    pub state_reset: bool,
    /// The sequence number the next record gets.
    pub next_seq: u64,
}

/// The writer side of a spool (one per spool, used from one thread).
pub struct SpoolWriter {
    shared: Arc<Shared>,
    identity: Identity,
    segment_bytes: u64,
    buffer_bytes: usize,
    /// The active segment, open for appending; `None` until the first flush needs one.
    active: Option<File>,
    /// Bytes of the active segment up to its last whole record.
    active_len: u64,
    buf: Vec<u8>,
    buf_records: u64,
    buf_first_seq: u64,
    next_seq: u64,
    last_sync: Instant,
    unsynced: bool,
    /// Loss counters changed and are not on disk yet.
    state_pending: bool,
}

/// Opens (or creates) the spool in `options.dir` for records of `identity`: recovers the last segment, reads
/// the cursor, and returns the writer, the handle the publisher uses, and what recovery found.
pub fn open(options: &SpoolOptions, identity: Identity) -> Result<(SpoolWriter, SpoolHandle, Recovery), SpoolError> {
    check_options(options, &identity)?;
    let dir = options.dir.as_path();
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    let mut recovery = Recovery::default();
    let (mut state, state_reset) = read_state(dir);
    recovery.state_reset = state_reset;
    let mut segments = list_segments(dir, &mut recovery)?;
    recovery.segments = segments.len();

    // Only the last segment can hold a torn tail: every earlier one was complete when the next was started.
    let mut next_seq = state.acked_seq.max(state.evicted_through) + 1;
    let mut torn_gap = false;
    let mut last_scanned = None;
    if let Some(last) = segments.back_mut() {
        let scan = scan_segment(&last.path)?;
        last.last_seq = scan.last_seq.unwrap_or(last.base_seq - 1);
        if scan.valid_len < scan.file_len {
            let file = OpenOptions::new().write(true).open(&last.path).map_err(|e| io_error("open", &last.path, e))?;
            file.set_len(scan.valid_len).map_err(|e| io_error("truncate", &last.path, e))?;
            file.sync_all().map_err(|e| io_error("fsync", &last.path, e))?;
            recovery.torn = 1;
            torn_gap = true;
            // The torn record used a number: skip it (and any the surviving bytes name).
            let torn_seq = scan.torn_seq.filter(|&s| s > last.last_seq && s < last.last_seq + 1024);
            next_seq = next_seq.max(torn_seq.unwrap_or(last.last_seq + 1) + 1);
        }
        last.bytes = scan.valid_len;
        next_seq = next_seq.max(last.last_seq + 1);
        last_scanned = Some(scan.header);
    }
    // Sealed segments end where the next begins.
    for i in 0..segments.len().saturating_sub(1) {
        segments[i].last_seq = segments[i + 1].base_seq - 1;
    }

    if state.boot_id != identity.boot_id {
        state.begin_boot(&identity.boot_id, next_seq);
    }
    state.torn += recovery.torn;
    let floor = state.acked_seq.max(state.evicted_through);
    let mut doomed = Vec::new();
    while segments.len() > 1 && segments[0].last_seq <= floor {
        if let Some(segment) = segments.pop_front() {
            doomed.push(segment.path);
        }
    }
    recovery.pending_records = segments.iter().map(|s| s.records_above(floor)).sum();
    recovery.next_seq = next_seq;

    // Append to the last segment only if it is whole and of this host and boot.
    let reuse =
        !torn_gap && last_scanned.is_some_and(|h| h.host_id == identity.host_id && h.boot_id == identity.boot_id);
    let (active, active_len) = match (reuse, segments.back()) {
        (true, Some(last)) => {
            let file = OpenOptions::new().append(true).open(&last.path).map_err(|e| io_error("open", &last.path, e))?;
            (Some(file), last.bytes)
        }
        _ => (None, 0),
    };
    let total_bytes = segments.iter().map(|s| s.bytes).sum();
    let committed_seq = segments.back().map_or(next_seq - 1, |s| s.last_seq);
    let shared = Arc::new(Shared {
        dir: dir.to_owned(),
        fsync: options.fsync,
        max_bytes: options.max_bytes,
        boot_id: identity.boot_id.clone(),
        state_file: Mutex::new(()),
        inner: Mutex::new(Inner {
            segments,
            committed_seq,
            sent_through: 0,
            sent_max: state.sent_limit,
            state,
            state_dirty: true,
            total_bytes,
            high_water_bytes: total_bytes,
            eviction_deferred: 0,
            write_errors: 0,
            state_write_errors: 0,
            last_error: None,
        }),
        waker: Mutex::new(None),
    });
    // A state that cannot be written now (a full disk) stays dirty and is written by a later flush.
    if shared.persist().is_err() && !doomed.is_empty() {
        // Keep the acknowledged segments until the cursor that makes them so is on disk.
        doomed.clear();
    }
    shared.remove_files(doomed);
    let writer = SpoolWriter {
        shared: shared.clone(),
        identity,
        segment_bytes: options.segment_bytes,
        buffer_bytes: options.buffer_bytes,
        active,
        active_len,
        buf: Vec::with_capacity(options.buffer_bytes),
        buf_records: 0,
        buf_first_seq: next_seq,
        next_seq,
        last_sync: Instant::now(),
        unsynced: false,
        state_pending: shared.lock().state_dirty,
    };
    Ok((writer, SpoolHandle { shared }, recovery))
}

fn check_options(options: &SpoolOptions, identity: &Identity) -> Result<(), SpoolError> {
    if options.segment_bytes < 4096 {
        return Err(SpoolError::Invalid(format!("segment size {} is below 4096 bytes", options.segment_bytes)));
    }
    if options.max_bytes < 2 * options.segment_bytes {
        return Err(SpoolError::Invalid(format!(
            "spool limit {} must be at least two segments ({} bytes)",
            options.max_bytes,
            2 * options.segment_bytes
        )));
    }
    for id in [&identity.host_id, &identity.boot_id] {
        if id.is_empty() || id.len() > 255 {
            return Err(SpoolError::Invalid(format!("id {id:?} must be 1 to 255 bytes")));
        }
        // Ids go into headers (no line breaks) and into `Nats-Msg-Id` as `host:boot:seq` (no `:`).
        if id.chars().any(|c| c.is_control() || c == ':') {
            return Err(SpoolError::Invalid(format!("id {id:?} must hold no control character and no ':'")));
        }
    }
    Ok(())
}

fn read_state(dir: &Path) -> (SpoolState, bool) {
    match fs::read(dir.join("state")) {
        Ok(bytes) => match SpoolState::parse(&bytes) {
            Ok(state) => (state, false),
            Err(_) => (SpoolState::default(), true),
        },
        Err(_) => (SpoolState::default(), true),
    }
}

fn list_segments(dir: &Path, recovery: &mut Recovery) -> Result<VecDeque<Segment>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_error("list", dir, e))? {
        let entry = entry.map_err(|e| io_error("list", dir, e))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        found.push((base, entry.path()));
    }
    found.sort();
    let mut segments = VecDeque::new();
    for (base, path) in found {
        let mut head = vec![0; 24 + 255 + 255 + 4];
        let read = File::open(&path)
            .and_then(|mut f| read_up_to(&mut f, &mut head))
            .map_err(|e| io_error("read", &path, e))?;
        match SegmentHeader::parse(&head[..read]) {
            Ok((header, len)) if header.base_seq == base && base > 0 => segments.push_back(Segment {
                base_seq: base,
                last_seq: base - 1,
                bytes: fs::metadata(&path).map(|m| m.len()).unwrap_or(len as u64),
                host_id: header.host_id.into(),
                boot_id: header.boot_id.into(),
                path,
            }),
            _ => {
                recovery.bad_segments += 1;
                fs::remove_file(&path).map_err(|e| io_error("remove", &path, e))?;
            }
        }
    }
    Ok(segments)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buf.len() {
        match file.read(&mut buf[read..])? {
            0 => break,
            n => read += n,
        }
    }
    Ok(read)
}

struct Scan {
    header: SegmentHeader,
    last_seq: Option<u64>,
    valid_len: u64,
    file_len: u64,
    torn_seq: Option<u64>,
}

/// Reads a whole segment and finds where its whole records end.
fn scan_segment(path: &Path) -> Result<Scan, SpoolError> {
    let bytes = fs::read(path).map_err(|e| io_error("read", path, e))?;
    let (header, mut at) =
        SegmentHeader::parse(&bytes).map_err(|e| SpoolError::Invalid(format!("{}: {e}", path.display())))?;
    let mut last_seq = None;
    let mut torn_seq = None;
    while at < bytes.len() {
        match Record::parse(&bytes[at..]) {
            Ok((record, used)) => {
                last_seq = Some(record.seq);
                at += used;
            }
            Err(_) => {
                torn_seq = Record::peek_seq(&bytes[at..]);
                break;
            }
        }
    }
    Ok(Scan { header, last_seq, valid_len: at as u64, file_len: bytes.len() as u64, torn_seq })
}

/// A record the writer refuses (nothing is counted: the caller's input is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The subject token is empty or longer than 255 bytes.
    #[error("subject token must be 1 to 255 bytes")]
    BadToken,
    /// The record would exceed the largest record (16 MiB).
    #[error("record of {0} bytes is too large")]
    TooLarge(usize),
}

impl SpoolWriter {
    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The host and boot this writer's records belong to.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A handle on the same spool.
    pub fn handle(&self) -> SpoolHandle {
        SpoolHandle { shared: self.shared.clone() }
    }

    /// Bytes appended and not yet flushed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Flushes first if a record of `len` bytes would overflow the buffer (an error of that flush is counted).
    /// A caller that writes [`next_seq`](Self::next_seq) into a payload calls this before reading it, since a
    /// failed flush gives the dropped records' numbers back.
    pub fn make_room(&mut self, len: usize) {
        if !self.buf.is_empty() && self.buf.len() + len > self.buffer_bytes {
            let _ = self.flush();
        }
    }

    /// Appends a record whose payload is the concatenation of `payload_parts`, and returns its sequence
    /// number. It goes to the memory buffer (flushed first if full); an error of that flush is counted and
    /// does not fail the append.
    pub fn append(&mut self, kind: RecordKind, token: &str, payload_parts: &[&[u8]]) -> Result<u64, AppendError> {
        if token.is_empty() || token.len() > 255 {
            return Err(AppendError::BadToken);
        }
        let payload_len: usize = payload_parts.iter().map(|p| p.len()).sum();
        let body_len = 10 + token.len() + payload_len;
        if body_len > MAX_BODY_LEN {
            return Err(AppendError::TooLarge(body_len + 8));
        }
        self.make_room(body_len + 8);
        let seq = self.next_seq;
        if self.buf_records == 0 {
            self.buf_first_seq = seq;
        }
        emit_record(&mut self.buf, seq, kind, token, payload_parts);
        self.buf_records += 1;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Writes the buffer to the active segment (starting a new segment when the active one is full), syncs by
    /// the fsync policy, makes the records readable by the publisher, evicts past the limit and writes the
    /// state if it changed. A failed write drops the buffered records (counted as `write_dropped`) and
    /// returns the error; the next flush tries again.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        if self.buf.is_empty() {
            self.sync_if_due(false)?;
            return self.persist_if_pending();
        }
        if let Err(error) = self.write_buffer() {
            self.drop_buffer(&error);
            return Err(error);
        }
        let last_seq = self.next_seq - 1;
        let written = self.buf.len() as u64;
        self.buf.clear();
        self.buf_records = 0;
        let over_limit = {
            let mut inner = self.shared.lock();
            inner.committed_seq = last_seq;
            if let Some(active) = inner.segments.back_mut() {
                active.last_seq = last_seq;
                active.bytes = self.active_len;
            }
            inner.total_bytes += written;
            inner.high_water_bytes = inner.high_water_bytes.max(inner.total_bytes);
            inner.total_bytes > self.shared.max_bytes
        };
        self.shared.wake();
        if over_limit {
            self.evict();
        }
        // The records are readable whatever the sync says; a failed sync is reported (and counted).
        let synced = self.sync_if_due(false);
        if let Err(error) = &synced {
            let mut inner = self.shared.lock();
            inner.write_errors += 1;
            inner.last_error = Some(error.to_string());
        }
        let persisted = self.persist_if_pending();
        synced.and(persisted)
    }

    /// Writes the state after this writer changed loss counters (the publisher writes the cursor itself).
    fn persist_if_pending(&mut self) -> Result<(), SpoolError> {
        if !self.state_pending {
            return Ok(());
        }
        let result = self.shared.persist();
        self.state_pending = result.is_err();
        result
    }

    fn write_buffer(&mut self) -> Result<(), SpoolError> {
        if self.active.is_none() || self.active_len >= self.segment_bytes {
            self.start_segment()?;
        }
        let path = segment_path(&self.shared.dir, self.current_base());
        let Some(file) = self.active.as_mut() else {
            return Err(SpoolError::Invalid("no active segment".into()));
        };
        if let Err(error) = file.write_all(&self.buf) {
            // Cut back to the last whole record so the file stays readable.
            let _ = file.set_len(self.active_len);
            return Err(io_error("write", &path, error));
        }
        self.active_len += self.buf.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    fn current_base(&self) -> u64 {
        self.shared.lock().segments.back().map_or(0, |s| s.base_seq)
    }

    /// Seals the active segment and starts one whose first record is the buffer's first.
    fn start_segment(&mut self) -> Result<(), SpoolError> {
        if self.active.is_some() {
            self.sync_if_due(true)?;
        }
        let base = self.buf_first_seq;
        let path = segment_path(&self.shared.dir, base);
        let header = SegmentHeader {
            base_seq: base,
            host_id: self.identity.host_id.clone(),
            boot_id: self.identity.boot_id.clone(),
        };
        let mut bytes = Vec::with_capacity(header.encoded_len());
        header.emit(&mut bytes);
        let created = OpenOptions::new().append(true).create(true).truncate(false).open(&path).and_then(|mut file| {
            file.set_len(0)?;
            file.write_all(&bytes)?;
            Ok(file)
        });
        let file = match created {
            Ok(file) => file,
            Err(error) => {
                let _ = fs::remove_file(&path);
                return Err(io_error("create", &path, error));
            }
        };
        if self.shared.fsync != FsyncPolicy::Never {
            sync_dir(&self.shared.dir)?;
        }
        self.active = Some(file);
        self.active_len = bytes.len() as u64;
        let mut inner = self.shared.lock();
        inner.total_bytes += self.active_len;
        inner.segments.push_back(Segment {
            base_seq: base,
            last_seq: base - 1,
            bytes: self.active_len,
            host_id: self.identity.host_id.as_str().into(),
            boot_id: self.identity.boot_id.as_str().into(),
            path,
        });
        Ok(())
    }

    fn drop_buffer(&mut self, error: &SpoolError) {
        {
            let mut inner = self.shared.lock();
            inner.state.write_dropped += self.buf_records;
            inner.write_errors += 1;
            inner.state_dirty = true;
            inner.last_error = Some(error.to_string());
        }
        self.next_seq = self.buf_first_seq;
        self.buf.clear();
        self.buf_records = 0;
        self.state_pending = true;
        let _ = self.persist_if_pending();
    }

    fn sync_if_due(&mut self, sealing: bool) -> Result<(), SpoolError> {
        let due = match self.shared.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Every(period) => sealing || self.last_sync.elapsed() >= period,
            FsyncPolicy::Never => false,
        };
        if !(due && self.unsynced) {
            return Ok(());
        }
        if let Some(file) = &self.active {
            file.sync_data().map_err(|e| io_error("fsync", &self.shared.dir, e))?;
        }
        self.last_sync = Instant::now();
        self.unsynced = false;
        Ok(())
    }

    /// Deletes the oldest sealed segments while the spool is over its limit, counting their records that were
    /// not acknowledged. The counts reach the state file before the files are deleted.
    fn evict(&mut self) {
        let doomed = {
            let _file = self.shared.state_file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut inner = self.shared.lock();
            let mut doomed = Vec::new();
            while inner.total_bytes > self.shared.max_bytes && inner.segments.len() > 1 {
                let floor = inner.floor();
                let oldest = &inner.segments[0];
                let lost = oldest.records_above(floor);
                if lost > 0 && inner.sent_through > floor && inner.sent_through >= oldest.base_seq {
                    // Records of this segment are in flight: wait for their acks or their failure.
                    inner.eviction_deferred += 1;
                    break;
                }
                let last_seq = oldest.last_seq;
                let base_seq = oldest.base_seq;
                let same_boot = *oldest.boot_id == *self.identity.boot_id;
                let Some(segment) = inner.segments.pop_front() else {
                    break;
                };
                // Records sent without an ack may be in the stream: counted apart from the never sent.
                let sent = last_seq.min(inner.sent_max).saturating_sub(floor.max(base_seq - 1));
                if same_boot {
                    inner.state.evicted += lost - sent;
                    inner.state.evicted_unconfirmed += sent;
                } else {
                    inner.state.evicted_other_boot += lost;
                }
                inner.state.evicted_through = inner.state.evicted_through.max(last_seq);
                inner.total_bytes -= segment.bytes;
                inner.state_dirty = true;
                doomed.push(segment.path);
            }
            doomed
        };
        self.state_pending = true;
        let _ = self.persist_if_pending();
        self.shared.remove_files(doomed);
    }
}
