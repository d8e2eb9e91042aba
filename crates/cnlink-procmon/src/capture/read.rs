//! [`RecordingReader`]: the files of a recording, in order, as replay inputs and `/proc` answers.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use cnlink_capture::cooked::PACKET_KERNEL;
use cnlink_capture::{Block, Clock, Damage, HostInfo, LossKind, ReadError, Record, SnapshotReason, StreamReader};

use super::{lost_events, monotonic, Session};
use crate::record::ProcAnswer;
use crate::replay::ReplayInput;

/// The sender port given to datagrams a userspace socket sent: a capture keeps who sent a datagram (the kernel
/// or not, in the cooked header's packet type), not the port.
pub const USER_PORT: u32 = u32::MAX;

/// What the head of a recording says: the host and the session of its first file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// The host record.
    pub host: Option<HostInfo>,
    /// The session record, decoded.
    pub session: Option<Session>,
}

impl Head {
    /// `realtime - monotonic` at the start of the recording (0 without a host record).
    pub fn offset(&self) -> i64 {
        self.host.as_ref().map_or(0, HostInfo::monotonic_to_realtime_ns)
    }
}

/// One thing read from a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingItem {
    /// A datagram, an overrun or a loss, for [`crate::ReplayEvents`].
    Input(ReplayInput),
    /// A `/proc` answer, for [`crate::RecordedProc`].
    Answer(Box<ProcAnswer>),
    /// A packet as stored, with its timestamp (ns since the epoch), for any family.
    Packet {
        /// The netlink family.
        protocol: Option<u16>,
        /// The packet's timestamp.
        timestamp_ns: u64,
    },
    /// The recording missed this many events here (its channel was full).
    Hole {
        /// How many, when known.
        count: Option<u64>,
    },
    /// A file is damaged: everything before `damage.offset` was read.
    Damage {
        /// The file.
        path: PathBuf,
        /// Where and how.
        damage: Damage,
    },
    /// A file could not be opened or read, or a record could not be decoded.
    Error {
        /// The file.
        path: PathBuf,
        /// The byte offset of the block, when the file could be opened.
        offset: Option<u64>,
        /// What went wrong.
        what: String,
    },
}

impl RecordingItem {
    /// The replay input this item is, if it is one.
    pub fn into_input(self) -> Option<ReplayInput> {
        match self {
            RecordingItem::Input(i) => Some(i),
            _ => None,
        }
    }

    /// The `/proc` answer this item is, if it is one.
    pub fn into_answer(self) -> Option<ProcAnswer> {
        match self {
            RecordingItem::Answer(a) => Some(*a),
            _ => None,
        }
    }
}

/// Reads the files of a recording in order.
pub struct RecordingReader {
    paths: VecDeque<PathBuf>,
    current: Option<(PathBuf, StreamReader<BufReader<File>>)>,
    /// Files opened so far.
    files: u64,
    offset: i64,
    out: VecDeque<RecordingItem>,
}

impl std::fmt::Debug for RecordingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingReader").field("paths", &self.paths).field("files", &self.files).finish()
    }
}

impl RecordingReader {
    /// A reader over `paths`, in the order given (a rotated set oldest first).
    pub fn new(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> RecordingReader {
        RecordingReader {
            paths: paths.into_iter().map(|p| p.as_ref().to_path_buf()).collect(),
            current: None,
            files: 0,
            offset: 0,
            out: VecDeque::new(),
        }
    }

    /// The host and session records at the head of `path` (read until the first packet).
    pub fn head(path: &Path) -> Result<Head, ReadError> {
        let mut r = StreamReader::new(BufReader::new(File::open(path)?));
        let mut head = Head::default();
        while let Some(b) = r.next() {
            match b? {
                Block::Record(Record::Host(h)) if head.host.is_none() => head.host = Some(h),
                Block::Record(Record::Session(s)) if head.session.is_none() => {
                    head.session = Session::decode(&s).ok();
                }
                Block::Packet(_) => break,
                _ => {}
            }
        }
        Ok(head)
    }

    /// Every clock record of `paths`, in order (read on their own: nothing else is decoded). A file that cannot
    /// be read or is damaged gives what came before; its problem is reported by the reading proper.
    pub fn clocks(paths: impl IntoIterator<Item = impl AsRef<Path>>) -> Vec<Clock> {
        let mut out = Vec::new();
        for path in paths {
            let Ok(f) = File::open(path.as_ref()) else { continue };
            let mut r = StreamReader::new(BufReader::with_capacity(256 << 10, f));
            while let Some(b) = r.next() {
                match b {
                    Ok(Block::Record(Record::Clock(c))) => out.push(c),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        out
    }

    /// Reads one block of the current file into `out`; false when the file ended.
    fn step(&mut self) -> bool {
        let Some((path, r)) = self.current.as_mut() else { return false };
        let at = r.offset();
        let block = match r.next() {
            None => return false,
            Some(Err(ReadError::Damage(damage))) => {
                self.out.push_back(RecordingItem::Damage { path: path.clone(), damage });
                return false;
            }
            Some(Err(ReadError::Io(e))) => {
                self.out.push_back(RecordingItem::Error { path: path.clone(), offset: Some(at), what: e.to_string() });
                return false;
            }
            Some(Ok(b)) => b,
        };
        let bad = |what: String| RecordingItem::Error { path: path.clone(), offset: Some(at), what };
        let item = match block {
            Block::Packet(p) => {
                self.out.push_back(RecordingItem::Packet { protocol: p.protocol(), timestamp_ns: p.timestamp_ns });
                if p.protocol() != Some(cnlink_capture::NETLINK_CONNECTOR) {
                    return true;
                }
                let from_kernel = p.cooked.is_some_and(|c| c.packet_type == PACKET_KERNEL);
                RecordingItem::Input(ReplayInput::Datagram {
                    timestamp_ns: monotonic(p.timestamp_ns, self.offset),
                    from_port: if from_kernel { 0 } else { USER_PORT },
                    bytes: p.data.to_vec(),
                })
            }
            Block::Record(Record::Host(h)) => {
                self.offset = h.monotonic_to_realtime_ns();
                return true;
            }
            Block::Record(Record::Loss(l)) => match l.kind {
                LossKind::Overrun => {
                    RecordingItem::Input(ReplayInput::Overrun { timestamp_ns: monotonic(l.timestamp_ns, self.offset) })
                }
                LossKind::Recording => RecordingItem::Hole { count: l.count },
                _ => match lost_events(&l, self.offset) {
                    Some(loss) => RecordingItem::Input(ReplayInput::Lost { loss, before: l.before }),
                    None => bad(format!("a loss of a kind this version does not know ({:?})", l.kind)),
                },
            },
            // A later file of a rotated set starts with the table as it was then: only a replay that starts
            // with that file needs it.
            Block::Record(Record::Snapshot(s)) if s.reason == SnapshotReason::Rotation && self.files > 1 => {
                return true;
            }
            Block::Record(Record::Snapshot(s)) => match ProcAnswer::decode(s.encoding, &s.data) {
                Ok(a) => RecordingItem::Answer(Box::new(a)),
                Err(e) => bad(e.to_string()),
            },
            Block::Record(Record::ExecObservation(o)) => match ProcAnswer::decode(o.encoding, &o.data) {
                Ok(a) => RecordingItem::Answer(Box::new(a)),
                Err(e) => bad(e.to_string()),
            },
            _ => return true,
        };
        self.out.push_back(item);
        true
    }
}

impl Iterator for RecordingReader {
    type Item = RecordingItem;

    fn next(&mut self) -> Option<RecordingItem> {
        loop {
            if let Some(item) = self.out.pop_front() {
                return Some(item);
            }
            if self.current.is_some() {
                if !self.step() {
                    self.current = None;
                }
                continue;
            }
            let path = self.paths.pop_front()?;
            match File::open(&path) {
                Ok(f) => {
                    self.files += 1;
                    self.current = Some((path, StreamReader::new(BufReader::with_capacity(256 << 10, f))));
                }
                Err(e) => self.out.push_back(RecordingItem::Error { path, offset: None, what: e.to_string() }),
            }
        }
    }
}
