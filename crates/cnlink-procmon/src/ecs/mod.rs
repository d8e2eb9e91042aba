//! [Elastic Common Schema](https://www.elastic.co/guide/en/ecs/current/index.html) documents from
//! [`ProcRecord`]s: one JSON object per line, written by hand into a byte buffer (no allocation per value).
//!
//! [`EcsWriter::record`] writes one document per record, [`EcsWriter::loss`] one per loss report. The mapping
//! (which ECS field holds what, the `event.*` categorisation, the custom `cnlink.*` fields) is documented in
//! `docs/ecs.md`; it targets ECS [`ECS_VERSION`], and a test checks every field name the writer can produce
//! against that version's field list.
//!
//! ```
//! use cnlink_procmon::ecs::EcsWriter;
//! use cnlink_procmon::{HostIdentity, LossCause, LostEvents};
//!
//! let host = HostIdentity::new("3d1219c7c4c5404aaa1f6d2a48adfda4", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5");
//! let mut w = EcsWriter::new(&host).host_name("web-1");
//! // CLOCK_REALTIME - CLOCK_MONOTONIC, as read by the caller (the writer reads no clock).
//! w.set_realtime_offset(1_795_867_000_000_000_000);
//! w.loss(&LostEvents::exact(LossCause::SeqGap, 12, 200_000_000_000));
//! let line = std::str::from_utf8(w.bytes()).unwrap();
//! assert!(line.starts_with(r#"{"@timestamp":"2026-11-28T12:00:00.000000000Z","#), "{line}");
//! assert!(line.contains(r#""loss":{"count":12,"exact":true,"cause":"seq_gap"}"#));
//! ```

mod json;
mod time;

use cnlink::wire::{EventData, ExitStatus};
use sha2::{Digest, Sha256};

use crate::identity::HostIdentity;
use crate::loss::LostEvents;
use crate::table::process::{ProcessInfo, Program};
use crate::table::record::ProcRecord;
use json::Json;

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "9.4.0";

/// `event.dataset` of every document.
pub const DATASET: &str = "cnlink.process";

/// Writes ECS documents, one per line, into a growing buffer.
#[derive(Debug)]
pub struct EcsWriter {
    j: Json,
    /// The `host` object, rendered once.
    host: Vec<u8>,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in ns.
    realtime_offset_ns: i128,
    sequence: u64,
    /// SHA-256 with `v1:event_id:{host_id}:{boot_id}:` absorbed.
    event_id: Sha256,
    /// SHA-256 with `v1:loss_id:{host_id}:{boot_id}:` absorbed.
    loss_id: Sha256,
    host_id: String,
    boot_id: String,
}

impl EcsWriter {
    /// A writer for events of `host` (its id and boot id go into `host.*` and into each `event.id`).
    pub fn new(host: &HostIdentity) -> EcsWriter {
        let mut w = EcsWriter {
            j: Json::new(),
            host: Vec::new(),
            realtime_offset_ns: 0,
            sequence: 0,
            event_id: Sha256::new_with_prefix(format!("v1:event_id:{}:{}:", host.host_id, host.boot_id)),
            loss_id: Sha256::new_with_prefix(format!("v1:loss_id:{}:{}:", host.host_id, host.boot_id)),
            host_id: host.host_id.clone(),
            boot_id: host.boot_id.clone(),
        };
        w.render_host(None);
        w
    }

    /// Sets `host.name` (the caller's host name, e.g. from `uname`).
    pub fn host_name(mut self, name: &str) -> Self {
        self.render_host(Some(name));
        self
    }

    fn render_host(&mut self, name: Option<&str>) {
        let mut j = Json::new();
        j.begin_doc();
        if !self.host_id.is_empty() {
            j.bytes("id", self.host_id.as_bytes());
        }
        if let Some(n) = name {
            j.bytes("name", n.as_bytes());
        }
        j.open("boot");
        j.bytes("id", self.boot_id.as_bytes());
        j.close();
        j.buf.push(b'}');
        self.host = j.buf;
    }

    /// Sets `CLOCK_REALTIME - CLOCK_MONOTONIC` in ns: what turns the kernel's timestamps into `@timestamp`.
    /// It changes when the machine resumes from suspend or the clock is stepped; set it again for each batch.
    pub fn set_realtime_offset(&mut self, realtime_minus_monotonic_ns: i128) {
        self.realtime_offset_ns = realtime_minus_monotonic_ns;
    }

    /// The documents written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.j.buf
    }

    /// Empties the buffer (the sequence number goes on).
    pub fn clear(&mut self) {
        self.j.buf.clear();
    }

    /// Documents written, over the writer's life (the last `event.sequence`).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    fn time(&mut self, k: &str, monotonic_ns: u64) {
        self.j.open_string(k);
        time::rfc3339(&mut self.j.buf, i128::from(monotonic_ns) + self.realtime_offset_ns);
        self.j.close_string();
    }

    /// `@timestamp`, `ecs` and `event`.
    fn head(&mut self, ts: u64, kind: &str, types: &[&str], action: &str, id: [u8; 32]) {
        self.sequence += 1;
        self.j.begin_doc();
        self.time("@timestamp", ts);
        self.j.raw("ecs", br#"{"version":"9.4.0"}"#);
        self.j.open("event");
        self.j.ascii("kind", kind);
        self.j.raw("category", br#"["process"]"#);
        self.j.open_array("type");
        for t in types {
            self.j.ascii_elem(t);
        }
        self.j.close_array();
        self.j.ascii("action", action);
        self.j.u64("sequence", self.sequence);
        self.j.hex("id", &id[..16]);
        self.j.ascii("dataset", DATASET);
        self.j.ascii("module", "cnlink");
        self.j.close();
    }

    /// Writes a document that reports a loss, dated when it was noticed: `event.kind` `metric`, `event.action`
    /// `lost`, `cnlink.loss.*`.
    pub fn loss(&mut self, l: &LostEvents) {
        let mut h = self.loss_id.clone();
        let (timestamp_ns, count, cause) = (l.timestamp_ns, l.count, l.cause.name());
        h.update(format!("{timestamp_ns}:{}:{cause}", count.map_or("?".into(), |n| n.to_string())).as_bytes());
        self.head(timestamp_ns, "metric", &["info"], "lost", h.finalize().into());
        self.j.raw("host", &self.host);
        self.j.open("cnlink");
        self.j.u64("timestamp_ns", timestamp_ns);
        self.j.open("loss");
        if let Some(n) = count {
            self.j.u64("count", n);
        }
        self.j.bool("exact", l.exact);
        self.j.bytes("cause", cause.as_bytes());
        self.j.close();
        self.j.close();
        self.j.end_doc();
    }

    /// Writes the document of one record.
    pub fn record(&mut self, rec: &ProcRecord) {
        let ev = &rec.event;
        let (action, types) = classify(&ev.data);
        let mut h = self.event_id.clone();
        let mut n = itoa::Buffer::new();
        for (i, part) in [u64::from(ev.cpu), u64::from(ev.seq), ev.timestamp_ns].into_iter().enumerate() {
            if i > 0 {
                h.update(b":");
            }
            h.update(n.format(part).as_bytes());
        }
        self.head(ev.timestamp_ns, "event", types, action, h.finalize().into());
        self.process(rec);
        self.j.raw("host", &self.host);
        if let Some(p) = &rec.process {
            if let Some(c) = p.container() {
                self.j.open("container");
                self.j.ascii("id", &c.id);
                self.j.ascii("runtime", c.runtime.name());
                self.j.close();
            }
            if let Some(pod) = p.cgroup.as_ref().and_then(|c| c.class.pod.as_ref()) {
                self.j.open("orchestrator");
                self.j.ascii("type", "kubernetes");
                self.j.open("resource");
                self.j.ascii("type", "pod");
                self.j.bytes("id", pod.uid.as_bytes());
                self.j.close();
                self.j.close();
            }
        }
        self.custom(rec);
        self.j.end_doc();
    }

    /// The `process` object.
    fn process(&mut self, rec: &ProcRecord) {
        let ev = &rec.event;
        let (tid, tgid) = ev.data.subject().unwrap_or((0, 0));
        let p = rec.process.as_deref();
        if p.is_none() && tgid <= 0 {
            return;
        }
        self.j.open("process");
        self.j.i64("pid", i64::from(p.map_or(tgid, |p| p.pid)));
        if let Some(id) = rec.entity_id {
            self.j.hex("entity_id", &id.0);
        }
        if let Some(p) = p {
            self.program(&p.program);
            if let Some(cwd) = &p.cwd {
                self.j.bytes("working_directory", cwd.as_bytes());
            }
            if let Some(s) = p.start_ns {
                self.time("start", s);
            }
        }
        if tid > 0 {
            self.j.open("thread");
            self.j.i64("id", i64::from(tid));
            self.j.close();
        }
        if let EventData::Exit { process_pid, process_tgid, exit_code, .. } = ev.data {
            if process_pid == process_tgid {
                self.time("end", ev.timestamp_ns);
                self.j.i64("exit_code", exit_code_of(exit_code));
            }
        }
        if let Some(p) = p {
            self.credentials(p);
            // Where leaders may be found: the process, its parent, its ancestors (exec and exit records).
            let chain = || std::iter::once(p).chain(rec.parent.as_deref()).chain(rec.ancestors.iter().map(|a| &**a));
            if p.pgid > 0 {
                self.j.open("group_leader");
                self.j.i64("pid", i64::from(p.pgid));
                if let Some(l) = chain().find(|a| a.pid == p.pgid) {
                    self.j.hex("entity_id", &l.entity_id.0);
                }
                self.j.close();
            }
            if p.sid > 0 {
                self.j.open("session_leader");
                self.j.i64("pid", i64::from(p.sid));
                if let Some(l) = chain().find(|a| a.pid == p.sid) {
                    self.j.hex("entity_id", &l.entity_id.0);
                }
                self.j.close();
            }
            if !p.kthread {
                self.j.bool("interactive", p.tty_nr != 0);
            }
            if p.tty_nr != 0 {
                let t = p.tty_nr as u32;
                self.j.open("tty");
                self.j.open("char_device");
                self.j.u64("major", u64::from((t >> 8) & 0xfff));
                self.j.u64("minor", u64::from((t & 0xff) | ((t >> 12) & 0xfff00)));
                self.j.close();
                self.j.close();
            }
            if p.namespaces.nested() {
                if let Some(v) = p.namespaces.inner_pid() {
                    self.j.i64("vpid", i64::from(v));
                }
            }
            self.parent(rec, p);
            if let Some(l) = p.entry_leader.as_deref() {
                self.j.open("entry_leader");
                self.j.i64("pid", i64::from(l.pid));
                self.j.hex("entity_id", &l.entity_id.0);
                if !l.name.is_empty() {
                    self.j.bytes("name", l.name.as_bytes());
                }
                if let Some(a) = chain().find(|a| a.entity_id == l.entity_id) {
                    if let Some(e) = &a.program.exe {
                        self.j.bytes("executable", e.path.as_bytes());
                    }
                    if let Some(s) = a.start_ns {
                        self.time("start", s);
                    }
                }
                self.j.bool("same_as_process", l.entity_id == p.entity_id);
                self.j.open("entry_meta");
                self.j.ascii("type", l.kind.name());
                self.j.close();
                self.j.close();
            }
            if matches!(ev.data, EventData::Exec { .. }) && !p.exec_history.is_empty() {
                self.j.open_array("previous");
                for prog in p.exec_history.iter() {
                    self.j.open_elem();
                    if let Some(e) = &prog.exe {
                        self.j.bytes("executable", e.path.as_bytes());
                    }
                    self.args(prog, false);
                    self.j.close();
                }
                self.j.close_array();
            }
        } else if let Some(ppid) = event_parent(&ev.data) {
            self.j.open("parent");
            self.j.i64("pid", i64::from(ppid));
            self.j.close();
        }
        self.j.close();
    }

    /// `name`, `executable`, `args`, `args_count`, `command_line`.
    fn program(&mut self, prog: &Program) {
        if !prog.name.is_empty() {
            self.j.bytes("name", prog.name.as_bytes());
        }
        if let Some(e) = &prog.exe {
            self.j.bytes("executable", e.path.as_bytes());
        }
        self.args(prog, true);
    }

    /// `args` and `args_count`, and `command_line` if asked.
    fn args(&mut self, prog: &Program, command_line: bool) {
        let Some(argv) = prog.argv.as_deref() else { return };
        if argv.count == 0 {
            return;
        }
        self.j.open_array("args");
        for a in argv.args() {
            self.j.bytes_elem(a);
        }
        self.j.close_array();
        self.j.u64("args_count", u64::from(argv.count));
        if command_line {
            self.j.open_string("command_line");
            for (i, a) in argv.args().enumerate() {
                if i > 0 {
                    self.j.string_part(b" ");
                }
                self.j.string_part(a);
            }
            self.j.close_string();
        }
    }

    fn credentials(&mut self, p: &ProcessInfo) {
        let c = p.creds;
        for (k, v) in [("user", c.euid), ("real_user", c.ruid), ("group", c.egid), ("real_group", c.rgid)] {
            if let Some(v) = v {
                self.j.open(k);
                self.j.id_string("id", u64::from(v));
                self.j.close();
            }
        }
    }

    /// `process.parent`: the record's parent, else the pid the process or the event names.
    fn parent(&mut self, rec: &ProcRecord, p: &ProcessInfo) {
        let ppid = rec.parent.as_ref().map_or(p.parent_pid, |q| q.pid);
        if ppid <= 0 && rec.parent_entity_id.is_none() {
            return;
        }
        self.j.open("parent");
        self.j.i64("pid", i64::from(ppid));
        if let Some(id) = rec.parent.as_ref().map(|q| q.entity_id).or(rec.parent_entity_id) {
            self.j.hex("entity_id", &id.0);
        }
        if let Some(q) = rec.parent.as_deref() {
            self.program(&q.program);
            if let Some(s) = q.start_ns {
                self.time("start", s);
            }
        }
        self.j.close();
    }

    /// The custom fields: `cnlink.*`.
    fn custom(&mut self, rec: &ProcRecord) {
        let ev = &rec.event;
        self.j.open("cnlink");
        self.j.u64("cpu", u64::from(ev.cpu));
        self.j.u64("seq", u64::from(ev.seq));
        self.j.u64("timestamp_ns", ev.timestamp_ns);
        if let Some(s) = rec.entity_id_source {
            self.j.ascii("entity_id_source", s.name());
        }
        if rec.entity_id.is_some() {
            self.j.ascii("enrich_status", rec.status.name());
        }
        if let Some(tid) = rec.tid {
            self.j.i64("tid", i64::from(tid));
        }
        if let Some(p) = rec.process.as_deref() {
            if p.truncated {
                self.j.bool("truncated", true);
            }
            if let Some(e) = p.program.exe.as_ref().filter(|e| e.deleted || e.memfd) {
                self.j.open("exe");
                self.j.bool("deleted", e.deleted);
                self.j.bool("memfd", e.memfd);
                self.j.close();
            }
            if let Some(cg) = p.cgroup.as_deref() {
                self.j.open("cgroup");
                self.j.bytes("path", cg.path.as_bytes());
                if let Some(sd) = &cg.class.systemd {
                    if let Some(u) = &sd.unit {
                        self.j.bytes("unit", u.as_bytes());
                    }
                    if let Some(s) = &sd.slice {
                        self.j.bytes("slice", s.as_bytes());
                    }
                }
                if let Some(pod) = &cg.class.pod {
                    self.j.ascii("pod_qos", qos_name(pod.qos));
                }
                self.j.close();
            }
        }
        if !rec.ancestors.is_empty() {
            self.j.open_array("ancestors");
            for a in &rec.ancestors {
                self.j.open_elem();
                self.j.i64("pid", i64::from(a.pid));
                self.j.hex("entity_id", &a.entity_id.0);
                if !a.program.name.is_empty() {
                    self.j.bytes("name", a.program.name.as_bytes());
                }
                if let Some(e) = &a.program.exe {
                    self.j.bytes("executable", e.path.as_bytes());
                }
                self.j.close();
            }
            self.j.close_array();
        }
        self.event_details(rec);
        self.j.close();
    }

    /// What the event itself says beyond the process: exit status, previous values, tracer, raw kind.
    fn event_details(&mut self, rec: &ProcRecord) {
        let prev = rec.previous.as_deref();
        match rec.event.data {
            EventData::Exit { exit_code, exit_signal, .. } => {
                self.j.open("exit");
                self.j.u64("status", u64::from(exit_code));
                match ExitStatus::from_raw(exit_code) {
                    ExitStatus::Exited(c) => self.j.u64("code", u64::from(c)),
                    ExitStatus::Signaled { signal, core_dumped } => {
                        self.j.u64("signal", u64::from(signal));
                        self.j.bool("core_dumped", core_dumped);
                    }
                    ExitStatus::Other(_) => {}
                }
                self.j.i64("exit_signal", i64::from(exit_signal as i32));
                self.j.close();
                if let Some(l) = rec.lifetime_ns {
                    self.j.u64("lifetime_ns", l);
                }
            }
            EventData::Comm { comm, .. } => {
                let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                self.j.bytes("comm", &comm[..end]);
                if let Some(p) = prev {
                    self.j.open("previous");
                    self.j.bytes("name", p.program.name.as_bytes());
                    self.j.close();
                }
            }
            EventData::Uid { ruid, euid, .. } => {
                self.j.open("uid");
                self.j.u64("real", u64::from(ruid));
                self.j.u64("effective", u64::from(euid));
                self.j.close();
                if let Some(c) = prev.map(|p| p.creds) {
                    self.j.open("previous");
                    opt_u32(&mut self.j, "real_user_id", c.ruid);
                    opt_u32(&mut self.j, "user_id", c.euid);
                    self.j.close();
                }
            }
            EventData::Gid { rgid, egid, .. } => {
                self.j.open("gid");
                self.j.u64("real", u64::from(rgid));
                self.j.u64("effective", u64::from(egid));
                self.j.close();
                if let Some(c) = prev.map(|p| p.creds) {
                    self.j.open("previous");
                    opt_u32(&mut self.j, "real_group_id", c.rgid);
                    opt_u32(&mut self.j, "group_id", c.egid);
                    self.j.close();
                }
            }
            EventData::Sid { .. } => {
                if let Some(p) = prev {
                    self.j.open("previous");
                    self.j.i64("sid", i64::from(p.sid));
                    self.j.i64("pgid", i64::from(p.pgid));
                    self.j.close();
                }
            }
            EventData::Ptrace { tracer_pid, tracer_tgid, .. } => {
                self.j.open("tracer");
                self.j.i64("pid", i64::from(tracer_tgid));
                self.j.i64("tid", i64::from(tracer_pid));
                self.j.close();
            }
            EventData::Coredump { parent_tgid, .. } => {
                self.j.i64("parent_tgid", i64::from(parent_tgid));
            }
            EventData::Unknown { what, len, data } => {
                self.j.open("unknown");
                self.j.u64("what", u64::from(what));
                self.j.u64("len", u64::from(len));
                self.j.hex("data", &data[..usize::from(len).min(data.len())]);
                self.j.close();
            }
            EventData::Ack { err } => self.j.u64("ack_err", u64::from(err)),
            _ => {}
        }
    }
}

fn opt_u32(j: &mut Json, k: &str, v: Option<u32>) {
    if let Some(v) = v {
        j.u64(k, u64::from(v));
    }
}

fn qos_name(q: crate::container::QosClass) -> &'static str {
    match q {
        crate::container::QosClass::Guaranteed => "guaranteed",
        crate::container::QosClass::Burstable => "burstable",
        crate::container::QosClass::BestEffort => "besteffort",
    }
}

/// `event.action` and `event.type` of an event.
fn classify(data: &EventData) -> (&'static str, &'static [&'static str]) {
    match *data {
        EventData::Fork { child_pid, child_tgid, .. } if child_pid == child_tgid => ("fork", &["start"]),
        EventData::Fork { .. } => ("clone", &["info"]),
        EventData::Exec { .. } => ("exec", &["start"]),
        EventData::Exit { process_pid, process_tgid, .. } if process_pid == process_tgid => ("exit", &["end"]),
        EventData::Exit { .. } => ("thread_exit", &["info"]),
        EventData::Uid { .. } => ("uid_change", &["change"]),
        EventData::Gid { .. } => ("gid_change", &["change"]),
        EventData::Sid { .. } => ("sid_change", &["change"]),
        EventData::Comm { .. } => ("comm_change", &["change"]),
        EventData::Ptrace { tracer_tgid: 0, .. } => ("ptrace_detach", &["access"]),
        EventData::Ptrace { .. } => ("ptrace_attach", &["access"]),
        EventData::Coredump { .. } => ("coredump", &["info"]),
        EventData::Ack { .. } => ("ack", &["info"]),
        _ => ("unknown", &["info"]),
    }
}

/// `process.exit_code`: the code of a normal exit, 128 + the signal for a death by signal (as a shell's `$?`),
/// else the raw status.
fn exit_code_of(raw: u32) -> i64 {
    match ExitStatus::from_raw(raw) {
        ExitStatus::Exited(c) => i64::from(c),
        ExitStatus::Signaled { signal, .. } => 128 + i64::from(signal),
        ExitStatus::Other(s) => i64::from(s),
    }
}

/// The parent pid an event names (fork, exit, coredump), when known.
fn event_parent(data: &EventData) -> Option<i32> {
    match *data {
        EventData::Fork { parent_tgid, .. }
        | EventData::Exit { parent_tgid, .. }
        | EventData::Coredump { parent_tgid, .. } => (parent_tgid > 0).then_some(parent_tgid),
        _ => None,
    }
}

/// The `event.id` [`EcsWriter`] gives the kernel event `(cpu, seq, timestamp_ns)` of `host`: 32 hex digits, the
/// first 16 bytes of the SHA-256 of `v1:event_id:{host_id}:{boot_id}:{cpu}:{seq}:{timestamp_ns}`. Every monitor
/// of the host gives one event the same id.
pub fn event_id(host: &HostIdentity, cpu: u32, seq: u32, timestamp_ns: u64) -> String {
    let d = Sha256::digest(format!("v1:event_id:{}:{}:{cpu}:{seq}:{timestamp_ns}", host.host_id, host.boot_id));
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
