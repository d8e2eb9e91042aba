//! Cutting a recording made on a busy machine down to one workload: what the golden recordings under `tests/data/`
//! are made with (see `tests/data/README.md`).
//!
//! A recording holds every process event of the machine and every `/proc` answer the monitor used. The golden
//! keeps, of the datagrams, those about the workload's processes (the roots given, their descendants and their
//! threads, followed through the stream) and the acknowledgements; every loss record the receiving side wrote;
//! the host, session and clock records. Its `/proc` answers are not picked from the recording's: a monitor replays
//! the kept datagrams (with the replay's settings) and asks its questions of the recording's answers, looked up by
//! kind, pid and what was read; what it asked, and was answered, in that order, is what the golden holds (the
//! start-up snapshot cut to the roots' ancestors). So a replay of the golden asks exactly the questions it holds
//! answers for.
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cnlink::wire::{CbId, CnMsg, EventData, EventMask, NlMessages, ProcEvent};
use cnlink_capture::{
    Block, CaptureWriter, CookedHeader, FileHeader, LossKind, Reader, Record, Snapshot, SnapshotReason,
};
use cnlink_procmon::capture::{answer_record, RecordingItem, RecordingReader, Session};
use cnlink_procmon::{Monitor, MonitorItem, Observation, ProcAnswer, ProcSource, RecordedProc, ReplayEvents, Wants};

/// The first proc event of a datagram.
fn event_of(datagram: &[u8]) -> Option<EventData> {
    let nl = NlMessages::new(datagram).next()?.ok()?;
    let cn = CnMsg::new_checked(nl.payload()).ok()?;
    if cn.id() != CbId::PROC {
        return None;
    }
    ProcEvent::parse(cn.data()).ok().map(|e| e.data)
}

/// Follows the workload through the stream: its processes (thread group ids) now.
struct Workload {
    roots: HashSet<i32>,
    live: HashSet<i32>,
    /// The parent of each root, from its fork.
    parents: Vec<i32>,
}

impl Workload {
    /// Whether the datagram is the workload's (or not a process's: acks), updating who belongs to it.
    fn keeps(&mut self, datagram: &[u8]) -> bool {
        let Some(ev) = event_of(datagram) else { return true };
        match ev {
            EventData::Fork { parent_tgid, child_pid, child_tgid, .. } => {
                let ours = self.live.contains(&parent_tgid) || self.roots.contains(&child_tgid);
                if ours && child_pid == child_tgid {
                    if self.roots.contains(&child_tgid) && !self.live.contains(&parent_tgid) {
                        self.parents.push(parent_tgid);
                    }
                    self.live.insert(child_tgid);
                }
                ours || self.live.contains(&child_tgid)
            }
            EventData::Exit { process_pid, process_tgid, .. } => {
                let ours = self.live.contains(&process_tgid);
                if ours && process_pid == process_tgid {
                    self.live.remove(&process_tgid);
                }
                ours
            }
            EventData::Ack { .. } | EventData::Unknown { .. } => true,
            other => other.subject().is_some_and(|(_, tgid)| self.live.contains(&tgid)),
        }
    }
}

/// A `/proc` that answers from a recording's answers, by kind, pid and what was read (each answer once, the
/// earliest first), and logs every answer it gives.
struct Lookup {
    answers: Vec<Option<ProcAnswer>>,
    snapshot: Option<ProcAnswer>,
    log: Arc<Mutex<Vec<ProcAnswer>>>,
}

impl Lookup {
    fn find(&mut self, fits: impl Fn(&ProcAnswer) -> bool) -> Option<ProcAnswer> {
        self.answers.iter_mut().find(|a| a.as_ref().is_some_and(&fits)).and_then(Option::take)
    }

    fn give(&self, a: ProcAnswer) {
        self.log.lock().unwrap().push(a);
    }
}

impl ProcSource for Lookup {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        let o = match self
            .find(|a| matches!(a, ProcAnswer::Observe { pid: p, wants: w, .. } if *p == pid && *w == wants))
        {
            Some(ProcAnswer::Observe { observation, .. }) => *observation,
            _ => Observation::gone(pid, 0),
        };
        self.give(ProcAnswer::Observe { pid, wants, observation: Box::new(o.clone()) });
        o
    }

    fn exists(&mut self, pid: i32) -> bool {
        let e = match self.find(|a| matches!(a, ProcAnswer::Exists { pid: p, .. } if *p == pid)) {
            Some(ProcAnswer::Exists { exists, .. }) => exists,
            _ => true,
        };
        self.give(ProcAnswer::Exists { pid, exists: e });
        e
    }

    fn snapshot(&mut self, wants: Wants) -> cnlink_procmon::Snapshot {
        let a = self.snapshot.take().unwrap_or(ProcAnswer::Snapshot {
            wants,
            snapshot: cnlink_procmon::Snapshot { ticks_per_second: 100, processes: Vec::new() },
        });
        self.give(a.clone());
        match a {
            ProcAnswer::Snapshot { snapshot, .. } => snapshot,
            _ => unreachable!("a snapshot answer"),
        }
    }

    fn pgid(&mut self, pid: i32) -> Option<i32> {
        let g = match self.find(|a| matches!(a, ProcAnswer::Pgid { pid: p, .. } if *p == pid)) {
            Some(ProcAnswer::Pgid { pgid, .. }) => pgid,
            _ => None,
        };
        self.give(ProcAnswer::Pgid { pid, pgid: g });
        g
    }
}

/// The snapshot cut to the processes from each of `pids` up through their parents.
fn ancestors_only(a: ProcAnswer, pids: &[i32]) -> ProcAnswer {
    let ProcAnswer::Snapshot { wants, snapshot } = a else { return a };
    let ppid =
        |pid: i32| snapshot.processes.iter().find(|o| o.pid == pid).and_then(|o| o.stat.as_ref()).map(|s| s.ppid);
    let mut keep = HashSet::new();
    for &p in pids {
        let mut pid = p;
        while pid > 0 && keep.insert(pid) {
            pid = ppid(pid).unwrap_or(0);
        }
    }
    let processes = snapshot.processes.iter().filter(|o| keep.contains(&o.pid)).cloned().collect();
    ProcAnswer::Snapshot { wants, snapshot: cnlink_procmon::Snapshot { processes, ..snapshot } }
}

/// A block the golden keeps, in order.
enum Kept {
    Packet(u64, CookedHeader, Vec<u8>),
    Record(Record),
}

/// Writes the header blocks of `from` (host, session, clock) and the kept blocks; returns the roots' parents.
fn write_kept(from: &[u8], roots: &[i32], answers: &[ProcAnswer], to: &Path) -> Vec<i32> {
    let mut header = FileHeader::netlink(&[cnlink_capture::NETLINK_CONNECTOR]);
    let mut body: Vec<Kept> = Vec::new();
    let mut w = Workload { roots: roots.iter().copied().collect(), live: HashSet::new(), parents: Vec::new() };
    let mut seen_packet = false;
    for b in Reader::new(from) {
        match b.expect("the recording reads whole") {
            Block::Section(s) => {
                header.section = s.options;
            }
            Block::Record(Record::Host(h)) => header.host = Some(h),
            Block::Record(r @ (Record::Session(_) | Record::Clock(_))) if !seen_packet => header.records.push(r),
            Block::Record(r @ Record::Clock(_)) => body.push(Kept::Record(r)),
            Block::Record(Record::Loss(l)) if l.kind != LossKind::Recording => body.push(Kept::Record(Record::Loss(l))),
            Block::Packet(p) => {
                seen_packet = true;
                if p.protocol() == Some(cnlink_capture::NETLINK_CONNECTOR) && w.keeps(p.data) {
                    let cooked = p.cooked.expect("a cooked header");
                    body.push(Kept::Packet(p.timestamp_ns, cooked, p.data.to_vec()));
                }
            }
            _ => {}
        }
    }
    let mut out = CaptureWriter::new(Vec::new(), &header).unwrap();
    let at = header.host.as_ref().map_or(0, |h| h.realtime_ns.max(0) as u64);
    for a in answers {
        let r = match answer_record(a, at) {
            Record::Snapshot(s) => Record::Snapshot(Snapshot { reason: SnapshotReason::Start, ..s }),
            r => r,
        };
        out.write_record(&r).unwrap();
    }
    for k in body {
        match k {
            Kept::Packet(ts, cooked, data) => out.write_packet(ts, &cooked, &data).unwrap(),
            Kept::Record(r) => out.write_record(&r).unwrap(),
        }
    }
    std::fs::write(to, out.into_inner().unwrap()).unwrap();
    w.parents
}

/// Cuts the recording `full` down to the workload of `roots` (pids the golden's maker started) into `to`.
pub(crate) fn trim(full: &Path, roots: &[i32], to: &Path) {
    let bytes = std::fs::read(full).unwrap();
    // First the datagrams, to know the roots' parents and to replay them.
    let parents = write_kept(&bytes, roots, &[], to);
    let head = RecordingReader::head(full).unwrap();
    let session: Session = head.session.clone().expect("a session record");
    let ms = session.monitor.clone().expect("a monitor's session");
    let mut answers = Vec::new();
    let mut snapshot = None;
    for item in RecordingReader::new([full]) {
        if let RecordingItem::Answer(a) = item {
            match *a {
                s @ ProcAnswer::Snapshot { .. } if snapshot.is_none() => snapshot = Some(s),
                a => answers.push(Some(a)),
            }
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let lookup = Lookup { answers, snapshot: snapshot.map(|s| ancestors_only(s, &parents)), log: log.clone() };
    let inputs: Vec<_> = RecordingReader::new([to]).filter_map(RecordingItem::into_input).collect();
    let events = ReplayEvents::new(inputs, EventMask(ms.kernel_mask), ms.kernel_filtered);
    let mut b = Monitor::builder().source(events).proc_source(lookup).own_pid(Some(session.pid));
    if let Some(h) = session.host() {
        b = b.host(h);
    }
    let mon = b.build().unwrap();
    let shown = mon.filter(|i| matches!(i, Ok(MonitorItem::Record(_)))).count();
    assert!(shown > 0, "the workload's events");
    let used = log.lock().unwrap().clone();
    write_kept(&bytes, roots, &used, to);
    // The golden replays with every answer it holds taken, in order.
    check(to);
}

/// Replays `golden` as `cnlink replay` does and asserts that every question found its answer.
pub(crate) fn check(golden: &Path) {
    let head = RecordingReader::head(golden).unwrap();
    let session = head.session.clone().unwrap();
    let ms = session.monitor.clone().unwrap();
    let inputs: Vec<_> = RecordingReader::new([golden]).filter_map(RecordingItem::into_input).collect();
    let answers: Vec<_> = RecordingReader::new([golden]).filter_map(RecordingItem::into_answer).collect();
    let proc = RecordedProc::new(answers);
    let mismatches = proc.mismatches();
    let events = ReplayEvents::new(inputs, EventMask(ms.kernel_mask), ms.kernel_filtered);
    let mut b = Monitor::builder().source(events).proc_source(proc).own_pid(Some(session.pid));
    if let Some(h) = session.host() {
        b = b.host(h);
    }
    let n = b.build().unwrap().count();
    assert!(n > 0);
    assert_eq!(mismatches.load(std::sync::atomic::Ordering::Relaxed), 0, "{}: every answer taken", golden.display());
}
