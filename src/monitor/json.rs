//! The native JSON of `cnlink proc`: one object per record or loss, written by hand into a byte buffer with no
//! allocation per event (schema: docs/json.md). The fields of a process repeat on every event about it, so
//! they are formatted once per process value and kept (as are the ancestors of a line of processes).

use std::sync::Arc;

use cnlink::wire::{EventData, ExitStatus};
use cnlink_procmon::{EntityId, LostEvents, ProcRecord, ProcessInfo};

use super::tty;

/// Writes JSON objects, one per line, into a growing buffer.
#[derive(Debug, Default)]
pub(crate) struct JsonWriter {
    buf: Vec<u8>,
    first: bool,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl JsonWriter {
    pub(crate) fn new() -> Self {
        JsonWriter { buf: Vec::with_capacity(1 << 16), first: true }
    }

    /// The bytes written so far.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// Opens an object.
    pub(crate) fn begin(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }

    /// Closes the object and the line.
    pub(crate) fn end(&mut self) {
        self.buf.extend_from_slice(b"}\n");
    }

    #[inline]
    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    #[inline]
    pub(crate) fn u64_field(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline]
    pub(crate) fn i64_field(&mut self, k: &str, v: i64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    #[inline]
    pub(crate) fn bool_field(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
    }

    #[inline]
    pub(crate) fn null_field(&mut self, k: &str) {
        self.key(k);
        self.buf.extend_from_slice(b"null");
    }

    #[inline]
    pub(crate) fn str_field(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v.as_bytes());
    }

    /// Bytes that need not be UTF-8, as a string: sequences that are not UTF-8 become U+FFFD.
    #[inline]
    pub(crate) fn bytes_field(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.string(v);
    }

    /// Bytes as lowercase hex in a string.
    #[inline]
    pub(crate) fn hex_field(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.hex(v);
    }

    fn hex(&mut self, v: &[u8]) {
        self.buf.push(b'"');
        for b in v {
            self.buf.push(HEX[usize::from(b >> 4)]);
            self.buf.push(HEX[usize::from(b & 15)]);
        }
        self.buf.push(b'"');
    }

    #[inline]
    fn id_field(&mut self, k: &str, id: &EntityId) {
        self.hex_field(k, &id.0);
    }

    /// Opens an array value.
    fn array(&mut self, k: &str) {
        self.key(k);
        self.buf.push(b'[');
    }

    fn close_array(&mut self) {
        self.buf.push(b']');
    }

    /// A separator between array elements.
    fn comma(&mut self, i: usize) {
        if i > 0 {
            self.buf.push(b',');
        }
    }

    /// A JSON string of bytes: quotes, backslashes and control characters escaped (`\n`, `\t`, `\r`, else
    /// `\u00XX`), sequences that are not UTF-8 as U+FFFD.
    #[inline]
    fn string(&mut self, bytes: &[u8]) {
        self.buf.push(b'"');
        cnlink_procmon::json_text::escape_into(&mut self.buf, bytes);
        self.buf.push(b'"');
    }

    /// Appends a fragment made by another writer (it starts with a comma when not empty).
    #[inline]
    fn fragment(&mut self, f: &[u8]) {
        if f.is_empty() {
            return;
        }
        if self.first {
            self.buf.extend_from_slice(&f[1..]);
        } else {
            self.buf.extend_from_slice(f);
        }
        self.first = false;
    }
}

/// Fragments kept per process value, and per line of ancestors (each keeps its values alive, so that a pointer
/// is never reused while it is a key).
#[derive(Debug)]
pub(crate) struct Fragments {
    processes: Vec<Option<(Arc<ProcessInfo>, ProcessFragment)>>,
    ancestors: Vec<Option<AncestorsFragment>>,
}

/// `,"ancestors":[...]` of a line of ancestors.
type AncestorsFragment = (Vec<Arc<ProcessInfo>>, Vec<u8>);

/// Slots of each kept kind.
const SLOTS: usize = 256;

impl Default for Fragments {
    fn default() -> Self {
        Fragments { processes: vec![None; SLOTS], ancestors: vec![None; SLOTS / 4] }
    }
}

fn slot(p: &Arc<ProcessInfo>, n: usize) -> usize {
    ((Arc::as_ptr(p) as usize) >> 6) % n
}

/// A process's keys, each preceded by a comma: its ids, then its name, then the rest.
#[derive(Debug, Clone)]
struct ProcessFragment {
    bytes: Vec<u8>,
    ids_end: usize,
    name_end: usize,
}

impl ProcessFragment {
    fn ids(&self) -> &[u8] {
        &self.bytes[..self.ids_end]
    }

    fn name(&self) -> &[u8] {
        &self.bytes[self.ids_end..self.name_end]
    }

    fn fields(&self) -> &[u8] {
        &self.bytes[self.name_end..]
    }
}

impl Fragments {
    /// The process's keys (always there: made when missing).
    fn process(&mut self, p: &Arc<ProcessInfo>) -> Option<&ProcessFragment> {
        let i = slot(p, self.processes.len());
        let fresh = !matches!(&self.processes[i], Some((k, _)) if Arc::ptr_eq(k, p));
        if fresh {
            let mut w = JsonWriter { buf: Vec::with_capacity(768), first: false };
            ids(&mut w, Some(&p.entity_id), Some(p.entity_id_source), p.parent_entity_id.as_ref(), p.status);
            let ids_end = w.buf.len();
            if !p.program.name.is_empty() {
                w.bytes_field("comm", p.program.name.as_bytes());
            }
            let name_end = w.buf.len();
            process_fields(&mut w, p);
            self.processes[i] = Some((p.clone(), ProcessFragment { bytes: w.buf, ids_end, name_end }));
        }
        self.processes[i].as_ref().map(|(_, f)| f)
    }

    /// `,"ancestors":[...]`.
    fn ancestors(&mut self, a: &[Arc<ProcessInfo>]) -> &[u8] {
        let Some(first) = a.first() else { return b",\"ancestors\":[]" };
        let i = slot(first, self.ancestors.len());
        let same = |k: &Vec<Arc<ProcessInfo>>| k.len() == a.len() && k.iter().zip(a).all(|(x, y)| Arc::ptr_eq(x, y));
        if !matches!(&self.ancestors[i], Some((k, _)) if same(k)) {
            let mut w = JsonWriter { buf: Vec::with_capacity(64 + 96 * a.len()), first: false };
            w.array("ancestors");
            for (j, p) in a.iter().enumerate() {
                w.comma(j);
                w.begin();
                w.i64_field("pid", p.pid.into());
                w.id_field("entity_id", &p.entity_id);
                w.bytes_field("name", p.program.name.as_bytes());
                w.buf.push(b'}');
            }
            w.close_array();
            self.ancestors[i] = Some((a.to_vec(), w.buf));
        }
        self.ancestors[i].as_ref().map_or(&[], |(_, b)| b)
    }
}

/// The ids of a record and its enrichment status.
fn ids(
    w: &mut JsonWriter,
    id: Option<&EntityId>,
    source: Option<cnlink_procmon::EntityIdSource>,
    parent: Option<&EntityId>,
    status: cnlink_procmon::EnrichStatus,
) {
    if let Some(id) = id {
        w.id_field("entity_id", id);
    }
    if let Some(s) = source {
        w.str_field("entity_id_source", s.name());
    }
    if let Some(id) = parent {
        w.id_field("parent_entity_id", id);
    }
    if id.is_some() {
        w.str_field("enrichment", status.name());
    }
}

/// What `/proc` and the table say about a process (not its name, which comm events replace).
fn process_fields(w: &mut JsonWriter, p: &ProcessInfo) {
    if let Some(a) = &p.program.argv {
        if a.count > 0 {
            w.bytes_field("cmdline", a.joined_lossy().as_bytes());
        }
        w.array("argv");
        let mut exact = true;
        for (i, arg) in a.args().enumerate() {
            w.comma(i);
            w.string(arg);
            exact &= std::str::from_utf8(arg).is_ok();
        }
        w.close_array();
        if !exact {
            w.array("argv_hex");
            for (i, arg) in a.args().enumerate() {
                w.comma(i);
                match std::str::from_utf8(arg) {
                    Ok(_) => w.buf.extend_from_slice(b"null"),
                    Err(_) => w.hex(arg),
                }
            }
            w.close_array();
        }
        if a.truncated {
            w.bool_field("argv_truncated", true);
        }
    }
    if let Some(e) = &p.program.exe {
        w.bytes_field("exe", e.path.as_bytes());
        w.bool_field("exe_deleted", e.deleted);
        w.bool_field("exe_memfd", e.memfd);
        if e.truncated {
            w.bool_field("exe_truncated", true);
        }
    }
    if let Some(c) = &p.cwd {
        w.bytes_field("cwd", c.as_bytes());
    }
    let c = p.creds;
    for (k, v) in [("uid", c.ruid), ("euid", c.euid), ("gid", c.rgid), ("egid", c.egid)] {
        if let Some(v) = v {
            w.u64_field(k, v.into());
        }
    }
    if p.start_ticks.is_some() || p.pgid != 0 || p.sid != 0 {
        w.i64_field("pgid", p.pgid.into());
        w.i64_field("sid", p.sid.into());
        if p.tty_nr != 0 {
            w.str_field("tty", &tty::name(p.tty_nr as u32));
        }
    }
    if p.kthread {
        w.bool_field("kthread", true);
    }
    if let Some(cg) = &p.cgroup {
        w.bytes_field("cgroup", cg.path.as_bytes());
        if cg.truncated {
            w.bool_field("cgroup_truncated", true);
        }
        if let Some(c) = &cg.class.container {
            w.str_field("container_id", &c.id);
            w.str_field("container_runtime", c.runtime.name());
        }
        if let Some(pod) = &cg.class.pod {
            w.str_field("pod_uid", &pod.uid);
            w.str_field("pod_qos", pod.qos.name());
        }
        if let Some(s) = &cg.class.systemd {
            if let Some(u) = &s.unit {
                w.str_field("unit", u);
            }
            if let Some(sl) = &s.slice {
                w.str_field("slice", sl);
            }
            if let Some(uid) = s.user {
                w.u64_field("unit_user", uid.into());
            }
        }
    }
    let ns = &p.namespaces;
    if let Some(n) = ns.pid_ns {
        w.u64_field("pid_ns", n);
    }
    if let Some(n) = ns.mnt_ns {
        w.u64_field("mnt_ns", n);
    }
    if let Some(levels) = &ns.nspid {
        w.array("nspid");
        for (i, n) in levels.iter().enumerate() {
            w.comma(i);
            w.buf.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
        }
        w.close_array();
    }
    if p.truncated {
        w.bool_field("truncated", true);
    }
}

fn pid_tgid(w: &mut JsonWriter, pid: i32, tgid: i32) {
    w.i64_field("pid", pid.into());
    w.i64_field("tgid", tgid.into());
}

/// The process before the event, for the `old_*` keys.
#[derive(Clone, Copy, Default)]
struct Before<'a> {
    /// For comm events: the name before (the process's, or for a thread's rename, its process's now).
    comm: Option<&'a [u8]>,
    /// For uid events: the real uid before.
    uid: Option<u32>,
}

/// Writes one proc event with the kernel's field names (as `cnlink listen` and `send` show them).
pub(crate) fn event(w: &mut JsonWriter, ev: &cnlink::proc::Event) {
    w.begin();
    event_fields(w, ev.cpu, ev.seq, ev.timestamp_ns, &ev.data, Before::default());
    w.end();
}

/// The kernel's fields of an event.
fn event_fields(w: &mut JsonWriter, cpu: u32, seq: u32, timestamp_ns: u64, data: &EventData, before: Before<'_>) {
    w.str_field("event", data.name());
    w.u64_field("cpu", cpu.into());
    w.u64_field("seq", seq.into());
    w.u64_field("timestamp_ns", timestamp_ns);
    match *data {
        EventData::Fork { parent_pid, parent_tgid, child_pid, child_tgid } => {
            w.i64_field("parent_pid", parent_pid.into());
            w.i64_field("parent_tgid", parent_tgid.into());
            w.i64_field("child_pid", child_pid.into());
            w.i64_field("child_tgid", child_tgid.into());
            w.bool_field("thread", child_pid != child_tgid);
        }
        EventData::Exec { process_pid, process_tgid } | EventData::Sid { process_pid, process_tgid } => {
            pid_tgid(w, process_pid, process_tgid);
        }
        EventData::Uid { process_pid, process_tgid, ruid, euid } => {
            pid_tgid(w, process_pid, process_tgid);
            w.u64_field("ruid", ruid.into());
            w.u64_field("euid", euid.into());
            if let Some(old) = before.uid {
                w.u64_field("old_uid", old.into());
            }
        }
        EventData::Gid { process_pid, process_tgid, rgid, egid } => {
            pid_tgid(w, process_pid, process_tgid);
            w.u64_field("rgid", rgid.into());
            w.u64_field("egid", egid.into());
        }
        EventData::Ptrace { process_pid, process_tgid, tracer_pid, tracer_tgid } => {
            pid_tgid(w, process_pid, process_tgid);
            w.i64_field("tracer_pid", tracer_pid.into());
            w.i64_field("tracer_tgid", tracer_tgid.into());
        }
        EventData::Comm { process_pid, process_tgid, comm } => {
            pid_tgid(w, process_pid, process_tgid);
            let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
            w.bytes_field("comm", &comm[..end]);
            if let Some(old) = before.comm {
                w.bytes_field("old_comm", old);
            }
        }
        EventData::Coredump { process_pid, process_tgid, parent_pid, parent_tgid } => {
            pid_tgid(w, process_pid, process_tgid);
            w.i64_field("parent_pid", parent_pid.into());
            w.i64_field("parent_tgid", parent_tgid.into());
        }
        EventData::Exit { process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid } => {
            pid_tgid(w, process_pid, process_tgid);
            w.bool_field("thread", process_pid != process_tgid);
            w.u64_field("exit_code", exit_code.into());
            match ExitStatus::from_raw(exit_code) {
                ExitStatus::Exited(c) => w.u64_field("code", c.into()),
                ExitStatus::Signaled { signal, core_dumped } => {
                    w.u64_field("signal", signal.into());
                    w.bool_field("core_dumped", core_dumped);
                }
                ExitStatus::Other(_) => {}
            }
            w.i64_field("exit_signal", (exit_signal as i32).into());
            w.i64_field("parent_pid", parent_pid.into());
            w.i64_field("parent_tgid", parent_tgid.into());
        }
        EventData::Ack { err } => w.u64_field("err", err.into()),
        EventData::Unknown { what, len, data } => {
            w.u64_field("what", what.into());
            w.u64_field("len", len.into());
            w.hex_field("data", &data[..usize::from(len).min(data.len())]);
        }
        _ => {}
    }
}

/// Writes one record: the event with the kernel's field names, then what the table knows.
pub(crate) fn record(w: &mut JsonWriter, rec: &ProcRecord, frags: &mut Fragments) {
    let ev = &rec.event;
    let mut before = Before::default();
    let previous = rec.previous.as_deref();
    match ev.data {
        EventData::Uid { .. } => before.uid = previous.and_then(|p| p.creds.ruid),
        EventData::Comm { process_pid, process_tgid, .. } => {
            // A thread's rename leaves the process's name: the name before is the process's only for its leader.
            let old = if process_pid == process_tgid { previous } else { rec.process.as_deref() };
            before.comm = old.map(|p| p.program.name.as_bytes()).filter(|n| !n.is_empty());
        }
        _ => {}
    }
    w.begin();
    event_fields(w, ev.cpu, ev.seq, ev.timestamp_ns, &ev.data, before);
    let comm_written = matches!(ev.data, EventData::Comm { .. });
    match rec.process.as_ref().and_then(|p| Some((p, frags.process(p)?))) {
        Some((p, f)) => {
            // The record's ids are its process's, but for a process first met and already gone.
            let same = rec.entity_id == Some(p.entity_id)
                && rec.entity_id_source == Some(p.entity_id_source)
                && rec.parent_entity_id == p.parent_entity_id
                && rec.status == p.status;
            if same {
                w.fragment(f.ids());
            } else {
                ids(w, rec.entity_id.as_ref(), rec.entity_id_source, rec.parent_entity_id.as_ref(), rec.status);
            }
            if !comm_written {
                w.fragment(f.name());
            }
            w.fragment(f.fields());
        }
        None => ids(w, rec.entity_id.as_ref(), rec.entity_id_source, rec.parent_entity_id.as_ref(), rec.status),
    }
    if matches!(ev.data, EventData::Exec { .. } | EventData::Exit { .. }) && rec.process.is_some() {
        w.fragment(frags.ancestors(&rec.ancestors));
    }
    if let (EventData::Exec { .. }, Some(l)) = (ev.data, rec.entry_leader()) {
        w.key("entry_leader");
        w.begin();
        w.i64_field("pid", l.pid.into());
        w.id_field("entity_id", &l.entity_id);
        w.bytes_field("name", l.name.as_bytes());
        w.str_field("kind", l.kind.name());
        w.buf.push(b'}');
        w.first = false;
    }
    if let Some(l) = rec.lifetime_ns {
        w.u64_field("lifetime_ns", l);
    }
    w.end();
}

/// Writes a `lost` record: `count` is `null` when unknown, and `exact` is false for a lower bound or an unknown
/// count.
pub(crate) fn lost(w: &mut JsonWriter, l: &LostEvents) {
    w.begin();
    w.str_field("event", "lost");
    w.null_field("cpu");
    w.null_field("seq");
    w.u64_field("timestamp_ns", l.timestamp_ns);
    match l.count {
        Some(n) => w.u64_field("count", n),
        None => w.null_field("count"),
    }
    w.bool_field("exact", l.exact);
    w.str_field("cause", l.cause.name());
    w.end();
}

#[cfg(test)]
mod tests;
