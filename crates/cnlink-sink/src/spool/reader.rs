//! The publisher's side: reading written records in order from the segment files.

use std::fs::File;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;

use super::record::{Record, RecordKind, SegmentHeader, RECORD_PREFIX_LEN};
use super::shared::{Segment, Shared};

/// Bytes read from a segment file at a time.
const READ_CHUNK: usize = 256 << 10;

/// How far ahead of the records sent the durable `sent_limit` is raised (one state write per this many).
const SENT_LIMIT_STEP: u64 = 16384;

/// A record read back from the spool, with the host and boot of its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledRecord {
    /// Sink sequence number.
    pub seq: u64,
    /// Event or ledger.
    pub kind: RecordKind,
    /// The subject's last token.
    pub token: Arc<str>,
    /// The JSON payload (a view into the bytes read from the segment: not copied).
    pub payload: Bytes,
    /// The host id of the record's segment.
    pub host_id: Arc<str>,
    /// The boot id of the record's segment.
    pub boot_id: Arc<str>,
}

struct OpenSegment {
    file: File,
    /// The bytes last read from `file`; those from `at` on are not handed out yet.
    chunk: Bytes,
    at: usize,
    base_seq: u64,
    /// The base of the segment after this one, once there is one.
    next_base: Option<u64>,
    host_id: Arc<str>,
    boot_id: Arc<str>,
}

/// Reads the records the writer has made readable, in sequence order, from its own file handles.
pub struct SpoolReader {
    shared: Arc<Shared>,
    open: Option<OpenSegment>,
    /// The sequence number of the next record to hand out.
    pos: u64,
    /// The tokens met so far, shared by the records that carry them.
    tokens: Vec<Arc<str>>,
}

impl SpoolReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let pos = shared.lock().floor() + 1;
        SpoolReader { shared, open: None, pos, tokens: Vec::new() }
    }

    /// Goes back to the first record not yet acknowledged (after a failed publish), and releases the records
    /// in flight.
    pub fn rewind(&mut self) {
        let floor = {
            let mut inner = self.shared.lock();
            inner.sent_through = 0;
            inner.floor()
        };
        if self.pos != floor + 1 {
            self.pos = floor + 1;
            self.open = None;
        }
    }

    /// Appends up to `max` readable records to `out` and returns how many. The records are marked in flight
    /// (a segment holding them is not evicted until they are acknowledged or [`rewind`](Self::rewind) is
    /// called). Damage inside a sealed segment skips the rest of that segment, counted as torn.
    pub fn read_batch(&mut self, max: usize, out: &mut Vec<SpooledRecord>) -> usize {
        let start = out.len();
        let committed = {
            let inner = self.shared.lock();
            if self.pos <= inner.floor() {
                self.pos = inner.floor() + 1;
                self.open = None;
            }
            if let Some(open) = &mut self.open {
                open.next_base = inner.segments.iter().find(|s| s.base_seq > open.base_seq).map(|s| s.base_seq);
            }
            inner.committed_seq
        };
        let mut failures = 0;
        while out.len() - start < max && self.pos <= committed && failures < 2 {
            let in_open = self
                .open
                .as_ref()
                .is_some_and(|o| self.pos >= o.base_seq && o.next_base.is_none_or(|next| self.pos < next));
            if !in_open && !self.open_segment() {
                break;
            }
            match self.next_record() {
                Some(record) if record.seq < self.pos => {}
                Some(record) => {
                    self.pos = record.seq + 1;
                    out.push(record);
                }
                None => {
                    failures += 1;
                    self.skip_damage();
                }
            }
        }
        // Records evicted while they were read are never published (they are counted as evicted).
        let mut inner = self.shared.lock();
        let floor = inner.floor();
        let mut kept = start;
        for i in start..out.len() {
            if out[i].seq > floor {
                out.swap(kept, i);
                kept += 1;
            }
        }
        out.truncate(kept);
        let mut raised = false;
        if out.len() > start {
            let last = out[out.len() - 1].seq;
            inner.sent_through = inner.sent_through.max(last);
            inner.sent_max = inner.sent_max.max(last);
            if last > inner.state.sent_limit {
                // Written before the records go out, so a restarted process knows they may have.
                inner.state.sent_limit = last + SENT_LIMIT_STEP;
                inner.state_dirty = true;
                raised = true;
            }
        }
        drop(inner);
        if raised {
            let _ = self.shared.persist();
        }
        out.len() - start
    }

    /// Opens the segment holding `pos` (or the next one, past a gap). False when none holds it yet.
    fn open_segment(&mut self) -> bool {
        self.open = None;
        let (segment, next_base) = {
            let inner = self.shared.lock();
            let found = inner
                .segments
                .iter()
                .rev()
                .find(|s| s.base_seq <= self.pos && s.last_seq >= self.pos)
                .or_else(|| inner.segments.iter().find(|s| s.base_seq > self.pos))
                .cloned();
            let next_base = found
                .as_ref()
                .and_then(|f: &Segment| inner.segments.iter().find(|s| s.base_seq > f.base_seq).map(|s| s.base_seq));
            (found, next_base)
        };
        let Some(segment) = segment else {
            return false;
        };
        self.pos = self.pos.max(segment.base_seq);
        let Ok(mut file) = File::open(&segment.path) else {
            // Deleted under us (evicted or acknowledged): the next batch starts from the cursor again.
            return false;
        };
        let mut head = [0u8; 24];
        if file.read_exact(&mut head).is_err() {
            return false;
        }
        let ids_len =
            u16::from_le_bytes([head[10], head[11]]) as usize + u16::from_le_bytes([head[12], head[13]]) as usize;
        let mut rest = vec![0; ids_len + 4];
        if file.read_exact(&mut rest).is_err() {
            return false;
        }
        let mut whole = head.to_vec();
        whole.extend_from_slice(&rest);
        if SegmentHeader::parse(&whole).is_err() {
            return false;
        }
        self.open = Some(OpenSegment {
            file,
            chunk: Bytes::new(),
            at: 0,
            base_seq: segment.base_seq,
            next_base,
            host_id: segment.host_id,
            boot_id: segment.boot_id,
        });
        true
    }

    fn next_record(&mut self) -> Option<SpooledRecord> {
        let open = self.open.as_mut()?;
        if !fill(open, RECORD_PREFIX_LEN) {
            return None;
        }
        let unread = &open.chunk[open.at..];
        let body_len = u32::from_le_bytes([unread[0], unread[1], unread[2], unread[3]]) as usize;
        if body_len > super::record::MAX_BODY_LEN || !fill(open, RECORD_PREFIX_LEN + body_len) {
            return None;
        }
        let (record, len) = Record::parse(&open.chunk[open.at..]).ok()?;
        let (seq, kind) = (record.seq, record.kind);
        let token = match self.tokens.iter().find(|t| ***t == *record.token) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(record.token);
                if self.tokens.len() < 64 {
                    self.tokens.push(t.clone());
                }
                t
            }
        };
        let payload = open.chunk.slice(open.at + len - record.payload.len()..open.at + len);
        open.at += len;
        Some(SpooledRecord { seq, kind, token, payload, host_id: open.host_id.clone(), boot_id: open.boot_id.clone() })
    }

    /// A record that cannot be read although the writer made it readable: the rest of a sealed segment is
    /// damaged (counted as torn and skipped); in the active segment, look again later.
    fn skip_damage(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let mut inner = self.shared.lock();
        let this = inner.segments.iter().find(|s| s.base_seq == open.base_seq).map(|s| s.last_seq);
        let next_base = inner.segments.iter().find(|s| s.base_seq > open.base_seq).map(|s| s.base_seq);
        match (this, next_base) {
            // Deleted under us: start again from the cursor.
            (None, _) => self.pos = self.pos.max(inner.floor() + 1),
            // Sealed, and records it holds cannot be read: damage, counted and skipped.
            (Some(last), Some(next)) if self.pos <= last => {
                inner.state.torn += last + 1 - self.pos;
                inner.state_dirty = true;
                inner.last_error =
                    Some(format!("spool: damaged records {}..={last} in segment {} skipped", self.pos, open.base_seq));
                self.pos = next;
            }
            // Past its last record (a torn record's number was skipped): on to the next segment.
            (Some(_), Some(next)) => self.pos = self.pos.max(next),
            // The active segment: look again at the next batch.
            (Some(_), None) => {}
        }
    }
}

/// Reads from the segment until at least `want` bytes wait unread; false at the end of what is written.
fn fill(open: &mut OpenSegment, want: usize) -> bool {
    if open.chunk.len() - open.at >= want {
        return true;
    }
    // The records handed out keep the old chunk alive; what is left of it starts the new one.
    let unread = &open.chunk[open.at..];
    let room = READ_CHUNK.max(want - unread.len());
    let mut next = Vec::with_capacity(unread.len() + room);
    next.extend_from_slice(unread);
    // `read_to_end` on a file reads into the spare capacity without zeroing it first.
    let _ = (&open.file).take(room as u64).read_to_end(&mut next);
    let enough = next.len() >= want;
    open.chunk = Bytes::from(next);
    open.at = 0;
    enough
}
