//! JSON Lines output, written by hand into a byte buffer: no allocation per event (schema: docs/json.md).

use std::rc::Rc;

use cnlink::proc::{Event, Loss};
use cnlink::wire::{comm_str, EventData, ExitStatus};

use super::enrich::ProcInfo;

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

    /// The buffer itself, for writers that format text into it.
    pub(crate) fn buf_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
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

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    pub(crate) fn u64_field(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    pub(crate) fn i64_field(&mut self, k: &str, v: i64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    pub(crate) fn bool_field(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
    }

    pub(crate) fn null_field(&mut self, k: &str) {
        self.key(k);
        self.buf.extend_from_slice(b"null");
    }

    pub(crate) fn str_field(&mut self, k: &str, v: &str) {
        self.key(k);
        self.string(v);
    }

    /// Bytes as lowercase hex in a string.
    pub(crate) fn hex_field(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.buf.push(b'"');
        for b in v {
            self.buf.push(HEX[usize::from(b >> 4)]);
            self.buf.push(HEX[usize::from(b & 15)]);
        }
        self.buf.push(b'"');
    }

    /// A JSON string: quotes, backslashes and control characters escaped.
    fn string(&mut self, s: &str) {
        self.buf.push(b'"');
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\t' => b"\\t",
                b'\r' => b"\\r",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            self.buf.extend_from_slice(&bytes[start..i]);
            if esc.is_empty() {
                self.buf.extend_from_slice(b"\\u00");
                self.buf.push(HEX[usize::from(b >> 4)]);
                self.buf.push(HEX[usize::from(b & 15)]);
            } else {
                self.buf.extend_from_slice(esc);
            }
            start = i + 1;
        }
        self.buf.extend_from_slice(&bytes[start..]);
        self.buf.push(b'"');
    }
}

/// Extra facts the monitor knows about one event.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Extra<'a> {
    /// The subject process, from the cache.
    pub(crate) info: Option<&'a ProcInfo>,
    /// For exits: how long the task lived (kernel timestamps).
    pub(crate) lifetime_ns: Option<u64>,
    /// For comm events: the name before.
    pub(crate) old_comm: Option<&'a str>,
    /// For uid events: the real uid before.
    pub(crate) old_uid: Option<u32>,
}

/// Writes one event as a JSON object with the kernel's field names and what the cache adds.
pub(crate) fn event(w: &mut JsonWriter, ev: &Event, x: Extra<'_>) {
    w.begin();
    w.str_field("event", ev.data.name());
    w.u64_field("cpu", ev.cpu.into());
    w.u64_field("seq", ev.seq.into());
    w.u64_field("timestamp_ns", ev.timestamp_ns);
    let mut comm_written = false;
    match ev.data {
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
            if let Some(old) = x.old_uid {
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
            w.str_field("comm", &comm_str(&comm));
            if let Some(old) = x.old_comm {
                w.str_field("old_comm", old);
            }
            comm_written = true;
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
    if let Some(info) = x.info {
        if comm_written {
            enrichment(w, info, false);
        } else {
            // The same process's fields repeat on every event: format them once per cache entry.
            let fields = info.json.get_or_init(|| {
                let mut t = JsonWriter { buf: Vec::new(), first: false };
                enrichment(&mut t, info, true);
                Rc::from(t.buf)
            });
            if !fields.is_empty() {
                w.buf.push(b',');
                w.buf.extend_from_slice(&fields[1..]);
            }
        }
    }
    if let Some(l) = x.lifetime_ns {
        w.u64_field("lifetime_ns", l);
    }
    w.end();
}

/// The cache's fields, each preceded by a comma.
fn enrichment(w: &mut JsonWriter, info: &ProcInfo, with_comm: bool) {
    if with_comm && !info.comm.is_empty() {
        w.str_field("comm", &info.comm);
    }
    if !info.cmdline.is_empty() {
        w.str_field("cmdline", &info.cmdline);
    }
    if let Some(uid) = info.uid {
        w.u64_field("uid", uid.into());
    }
    if !info.cgroup.is_empty() {
        w.str_field("cgroup", &info.cgroup);
    }
}

fn pid_tgid(w: &mut JsonWriter, pid: i32, tgid: i32) {
    w.i64_field("pid", pid.into());
    w.i64_field("tgid", tgid.into());
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LostCause {
    /// Gaps in the kernel's per-CPU sequence numbers (the socket's receive buffer overflowed).
    SeqGap,
    /// The kernel's drop counter for this socket (kernel-filtered subscriptions, which have no usable gaps).
    KernelDrops,
    /// The monitor's own queue between receiving and printing was full.
    Queue,
}

impl LostCause {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LostCause::SeqGap => "seq_gap",
            LostCause::KernelDrops => "socket_drops",
            LostCause::Queue => "queue_overflow",
        }
    }
}

/// Writes a `lost` record: `count` is `null` when unknown, and `exact` is false for a lower bound or an unknown
/// count.
pub(crate) fn lost(w: &mut JsonWriter, loss: Loss, cause: LostCause, now_ns: u64) {
    w.begin();
    w.str_field("event", "lost");
    w.null_field("cpu");
    w.null_field("seq");
    w.u64_field("timestamp_ns", now_ns);
    match loss.count() {
        Some(n) => w.u64_field("count", n),
        None => w.null_field("count"),
    }
    w.bool_field("exact", loss.is_exact());
    w.str_field("cause", cause.name());
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(w: &JsonWriter) -> serde_json::Value {
        serde_json::from_slice(w.bytes()).expect("valid JSON")
    }

    #[test]
    fn escapes_strings() {
        let mut w = JsonWriter::new();
        w.begin();
        w.str_field("s", "a\"b\\c\nd\u{1}é");
        w.end();
        assert_eq!(parse(&w)["s"], "a\"b\\c\nd\u{1}é");
        assert!(w.bytes().ends_with(b"}\n"));
    }

    #[test]
    fn exit_event_has_kernel_fields_and_decoded_code() {
        let ev = Event {
            seq: 7,
            cpu: 1,
            timestamp_ns: 99,
            data: EventData::Exit {
                process_pid: 12,
                process_tgid: 12,
                exit_code: 768,
                exit_signal: 17,
                parent_pid: 10,
                parent_tgid: 10,
            },
        };
        let mut w = JsonWriter::new();
        event(&mut w, &ev, Extra { lifetime_ns: Some(5), ..Default::default() });
        let v = parse(&w);
        assert_eq!(v["event"], "exit");
        assert_eq!(v["pid"], 12);
        assert_eq!(v["tgid"], 12);
        assert_eq!(v["exit_code"], 768);
        assert_eq!(v["code"], 3);
        assert_eq!(v["parent_tgid"], 10);
        assert_eq!(v["lifetime_ns"], 5);
        assert_eq!(v["seq"], 7);
        assert!(v.get("signal").is_none());
    }

    #[test]
    fn signal_exit_and_fork() {
        let mut w = JsonWriter::new();
        let data = EventData::Exit {
            process_pid: 5,
            process_tgid: 4,
            exit_code: 9,
            exit_signal: u32::MAX,
            parent_pid: 0,
            parent_tgid: 0,
        };
        event(&mut w, &Event { seq: 0, cpu: 0, timestamp_ns: 0, data }, Extra::default());
        let v = parse(&w);
        assert_eq!(v["signal"], 9);
        assert_eq!(v["thread"], true);
        assert_eq!(v["exit_signal"], -1);

        w.clear();
        let data = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 2, child_tgid: 2 };
        event(&mut w, &Event { seq: 0, cpu: 0, timestamp_ns: 0, data }, Extra::default());
        let v = parse(&w);
        assert_eq!(
            (v["event"].as_str(), v["child_pid"].as_i64(), v["thread"].as_bool()),
            (Some("fork"), Some(2), Some(false))
        );
    }

    #[test]
    fn enrichment_is_formatted_once_and_follows_changes() {
        let mut info = ProcInfo { comm: "a\"b".into(), cmdline: "x y".into(), uid: Some(7), ..Default::default() };
        let ev = Event { seq: 1, cpu: 0, timestamp_ns: 2, data: EventData::Exec { process_pid: 3, process_tgid: 3 } };
        let mut w = JsonWriter::new();
        event(&mut w, &ev, Extra { info: Some(&info), ..Default::default() });
        let first = w.bytes().to_vec();
        assert!(info.json.get().is_some());
        w.clear();
        event(&mut w, &ev, Extra { info: Some(&info), ..Default::default() });
        assert_eq!(w.bytes(), first);
        let v = parse(&w);
        assert_eq!(
            (v["comm"].as_str(), v["cmdline"].as_str(), v["uid"].as_u64()),
            (Some("a\"b"), Some("x y"), Some(7))
        );
        assert!(v.get("cgroup").is_none());
        // An entry with nothing known adds nothing.
        info = ProcInfo::default();
        w.clear();
        event(&mut w, &ev, Extra { info: Some(&info), ..Default::default() });
        assert_eq!(parse(&w).as_object().unwrap().len(), 6);
    }

    #[test]
    fn lost_record() {
        let mut w = JsonWriter::new();
        lost(&mut w, Loss::Exact(42), LostCause::Queue, 1);
        let v = parse(&w);
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64(), v["exact"].as_bool()),
            (Some("lost"), Some(42), Some(true))
        );
        assert!(v["cpu"].is_null());
        w.clear();
        lost(&mut w, Loss::Unknown, LostCause::KernelDrops, 1);
        let v = parse(&w);
        assert!(v["count"].is_null());
        assert_eq!(v["exact"].as_bool(), Some(false));
    }
}
