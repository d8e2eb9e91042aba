//! The native JSON of `cnlink proc --format json` (docs/json.md) read back into records: one object, as
//! `cnlink proc` writes it or as the sink publishes it (`host_id`, `boot_id`, `sink_seq` in front), into a
//! [`ProcRecord`] or a [`LostEvents`].
//!
//! Written for input from the network: keys it does not know are ignored, a missing or wrongly typed key the
//! kind needs is a [`ReadError`], never a panic. What it gives back is what the object holds, so that writing
//! the record again gives the same bytes (`cnlink proc`'s writer; a test checks it on every kind of record the
//! table makes):
//!
//! - the event's kernel fields, exactly (`thread`, `code`, `signal` and `core_dumped` are derived from them);
//! - the record's ids and enrichment status; the process ([`ProcessInfo`]) with what its keys say; for `exec`
//!   and `exit`, the ancestors (pid, entity id and name each); for `exec`, the entry leader;
//! - [`ProcRecord::previous`] from `old_comm` (its name) and `old_uid` (its real uid), and
//!   [`ProcRecord::parent`] from the parent's pid and entity id (named when the first ancestor is the parent).
//!
//! What the native JSON does not hold stays unknown: the processes' start ticks, exec history and earlier
//! values beyond `old_comm`/`old_uid`, the parent's program. `start_ns` is the fork's timestamp for a forked
//! process and the exit's minus the lifetime for a process's exit. Strings are UTF-8 with U+FFFD where the
//! original bytes were not (argv alone is exact, through `argv_hex`); a comm longer than the kernel's 16 bytes
//! that way is cut at a character boundary.
//!
//! ```
//! use cnlink_procmon::native_json;
//! use cnlink_procmon::MonitorItem;
//!
//! let line = br#"{"host_id":"web01","boot_id":"b","sink_seq":7,"event":"exec","cpu":0,"seq":9,
//!     "timestamp_ns":5000,"pid":42,"tgid":42,"entity_id":"2530e491613173acafea7271ec5d1343",
//!     "entity_id_source":"stat","enrichment":"ok","comm":"sleep","argv":["sleep","1"],"ancestors":[]}"#;
//! let MonitorItem::Record(rec) = native_json::read(line)? else { unreachable!() };
//! let p = rec.process.as_deref().unwrap();
//! assert_eq!((p.pid, p.program.name.as_bytes()), (42, &b"sleep"[..]));
//! assert_eq!(p.program.argv.as_ref().unwrap().args().collect::<Vec<_>>(), [&b"sleep"[..], b"1"]);
//! assert!(native_json::read(br#"{"event":"exec","cpu":0}"#).is_err());
//! # Ok::<(), native_json::ReadError>(())
//! ```

use std::sync::Arc;

use cnlink::wire::proc_event::UNKNOWN_DATA_MAX;
use cnlink::wire::EventData;
use serde_json::{Map, Value};

use crate::container::{CgroupInfo, Container, PathClass, Pod, QosClass, Runtime, SystemdUnit};
use crate::identity::{EntityId, EntityIdSource};
use crate::loss::{LossCause, LostEvents};
use crate::monitor::MonitorItem;
use crate::procfs::{Argv, EnrichStatus};
use crate::table::process::{EntryLeader, EntryLeaderKind, ExeInfo, ProcessInfo};
use crate::table::record::{KernelEvent, ProcRecord};
use crate::BStr;

/// Why an object is not a record of the native JSON.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A key the record needs is not there.
    #[error("no {0:?}")]
    Missing(&'static str),
    /// A key holds a value of another type (or out of its range).
    #[error("{key:?} is not {expected}")]
    Type {
        /// The key (`parent.key` inside an element).
        key: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// A key holds a name this version does not know.
    #[error("{key:?}: unknown value {value:?}")]
    Value {
        /// The key.
        key: &'static str,
        /// The value (cut to 64 bytes).
        value: String,
    },
    /// `event` names no process event or loss (`stats`, `message`, ... or a kind newer than this reader).
    #[error("event {0:?} is not a process event or loss")]
    Kind(String),
}

/// Reads one line (one JSON object).
pub fn read(line: &[u8]) -> Result<MonitorItem, ReadError> {
    match serde_json::from_slice::<Value>(line)? {
        Value::Object(m) => read_object(&m),
        _ => Err(ReadError::NotAnObject),
    }
}

/// Reads one object already parsed (a caller that wants other keys of it too, such as the sink's).
pub fn read_object(m: &Map<String, Value>) -> Result<MonitorItem, ReadError> {
    let o = Obj(m, "");
    let kind = o.str("event")?.ok_or(ReadError::Missing("event"))?;
    if kind == "lost" {
        return lost(o).map(MonitorItem::Lost);
    }
    let data = event_data(o, kind)?;
    let event =
        KernelEvent { seq: o.req_u32("seq")?, cpu: o.req_u32("cpu")?, timestamp_ns: o.req_u64("timestamp_ns")?, data };
    record(o, event).map(MonitorItem::Record)
}

fn lost(o: Obj<'_>) -> Result<LostEvents, ReadError> {
    let cause = match o.str("cause")?.ok_or(ReadError::Missing("cause"))? {
        "seq_gap" => LossCause::SeqGap,
        "socket_drops" => LossCause::SocketDrops,
        "queue_overflow" => LossCause::Queue,
        other => return Err(unknown("cause", other)),
    };
    Ok(LostEvents {
        cause,
        count: o.u64("count")?,
        exact: o.bool("exact")?.ok_or(ReadError::Missing("exact"))?,
        cpu: None,
        timestamp_ns: o.req_u64("timestamp_ns")?,
    })
}

/// The kernel's fields of an event of `kind`.
fn event_data(o: Obj<'_>, kind: &str) -> Result<EventData, ReadError> {
    let pid_tgid = || -> Result<(i32, i32), ReadError> { Ok((o.req_pid("pid")?, o.req_pid("tgid")?)) };
    Ok(match kind {
        "fork" => EventData::Fork {
            parent_pid: o.req_pid("parent_pid")?,
            parent_tgid: o.req_pid("parent_tgid")?,
            child_pid: o.req_pid("child_pid")?,
            child_tgid: o.req_pid("child_tgid")?,
        },
        "exec" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Exec { process_pid, process_tgid }
        }
        "sid" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Sid { process_pid, process_tgid }
        }
        "uid" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Uid { process_pid, process_tgid, ruid: o.req_u32("ruid")?, euid: o.req_u32("euid")? }
        }
        "gid" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Gid { process_pid, process_tgid, rgid: o.req_u32("rgid")?, egid: o.req_u32("egid")? }
        }
        "ptrace" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Ptrace {
                process_pid,
                process_tgid,
                tracer_pid: o.req_pid("tracer_pid")?,
                tracer_tgid: o.req_pid("tracer_tgid")?,
            }
        }
        "comm" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            let name = o.str("comm")?.ok_or(ReadError::Missing("comm"))?;
            EventData::Comm { process_pid, process_tgid, comm: comm_bytes(name) }
        }
        "coredump" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            EventData::Coredump {
                process_pid,
                process_tgid,
                parent_pid: o.req_pid("parent_pid")?,
                parent_tgid: o.req_pid("parent_tgid")?,
            }
        }
        "exit" => {
            let (process_pid, process_tgid) = pid_tgid()?;
            let exit_signal = o.req_i64("exit_signal")?;
            let exit_signal = i32::try_from(exit_signal).map_err(|_| o.wrong("exit_signal", "a 32-bit integer"))?;
            EventData::Exit {
                process_pid,
                process_tgid,
                exit_code: o.req_u32("exit_code")?,
                exit_signal: exit_signal as u32,
                parent_pid: o.req_pid("parent_pid")?,
                parent_tgid: o.req_pid("parent_tgid")?,
            }
        }
        "ack" => EventData::Ack { err: o.req_u32("err")? },
        "unknown" => {
            let len = u16::try_from(o.req_u64("len")?).map_err(|_| o.wrong("len", "a 16-bit integer"))?;
            let bytes = o.hex("data")?.ok_or(ReadError::Missing("data"))?;
            if bytes.len() > UNKNOWN_DATA_MAX {
                return Err(o.wrong("data", "at most 64 bytes of hex"));
            }
            let mut data = [0u8; UNKNOWN_DATA_MAX];
            data[..bytes.len()].copy_from_slice(&bytes);
            EventData::Unknown { what: o.req_u32("what")?, len, data }
        }
        other => return Err(ReadError::Kind(cut(other))),
    })
}

/// A comm as the kernel's 16 bytes, cut at a character boundary.
fn comm_bytes(name: &str) -> [u8; 16] {
    let mut end = name.len().min(16);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut comm = [0u8; 16];
    comm[..end].copy_from_slice(&name.as_bytes()[..end]);
    comm
}

/// The record of `event`: ids, process, ancestry, previous values, lifetime.
fn record(o: Obj<'_>, event: KernelEvent) -> Result<ProcRecord, ReadError> {
    let data = event.data;
    let mut rec = ProcRecord::bare(event);
    rec.entity_id = o.id("entity_id")?;
    rec.entity_id_source = o.str("entity_id_source")?.map(source).transpose()?;
    rec.parent_entity_id = o.id("parent_entity_id")?;
    if let Some(s) = o.str("enrichment")? {
        rec.status = status(s)?;
    }
    rec.lifetime_ns = o.u64("lifetime_ns")?;
    let Some((pid, tgid)) = data.subject() else { return Ok(rec) };
    rec.tid = (pid != tgid).then_some(pid);
    let ancestors = o.array("ancestors")?;
    if let Some(a) = ancestors {
        rec.ancestors = a.iter().map(ancestor).collect::<Result<_, _>>()?;
    }
    let lineage = matches!(data, EventData::Exec { .. } | EventData::Exit { .. });
    let (Some(id), Some(src)) = (rec.entity_id, rec.entity_id_source) else { return Ok(rec) };
    if lineage && ancestors.is_none() {
        // Exec and exit records of a process carry its ancestors, if only `[]`.
        return Ok(rec);
    }
    let mut p = ProcessInfo::bare(tgid, id, src);
    p.parent_entity_id = rec.parent_entity_id;
    p.status = rec.status;
    p.parent_pid = match data {
        EventData::Fork { parent_tgid, .. }
        | EventData::Exit { parent_tgid, .. }
        | EventData::Coredump { parent_tgid, .. }
            if parent_tgid > 0 =>
        {
            parent_tgid
        }
        _ => rec.ancestors.first().map_or(0, |a| a.pid),
    };
    process_fields(o, &mut p)?;
    let comm_event = matches!(data, EventData::Comm { .. });
    let name = o.str("comm")?.unwrap_or_default();
    let old_comm = o.str("old_comm")?;
    match data {
        // A rename: the new name is the event's; for a thread's, the process keeps its name (the one before).
        EventData::Comm { .. } if pid == tgid => p.program.name = BStr::from(name),
        EventData::Comm { .. } => p.program.name = BStr::from(old_comm.unwrap_or_default()),
        _ => p.program.name = BStr::from(name),
    }
    match data {
        EventData::Fork { child_pid, child_tgid, .. } if child_pid == child_tgid => {
            p.start_ns = Some(event.timestamp_ns);
        }
        EventData::Exit { .. } if pid == tgid => {
            p.start_ns = rec.lifetime_ns.and_then(|l| event.timestamp_ns.checked_sub(l));
        }
        EventData::Exec { .. } => {
            p.entry_leader = o.object("entry_leader")?.map(entry_leader).transpose()?.map(Arc::new);
        }
        _ => {}
    }
    if comm_event && pid == tgid {
        if let Some(old) = old_comm {
            let mut before = p.clone();
            before.program.name = BStr::from(old);
            rec.previous = Some(Arc::new(before));
        }
    }
    if let (EventData::Uid { .. }, Some(old)) = (data, o.u32("old_uid")?) {
        let mut before = p.clone();
        before.creds = crate::table::process::Creds { ruid: Some(old), ..Default::default() };
        rec.previous = Some(Arc::new(before));
    }
    if let Some(parent_id) = rec.parent_entity_id.filter(|_| p.parent_pid > 0) {
        let named = rec.ancestors.first().filter(|a| a.entity_id == parent_id && a.pid == p.parent_pid);
        rec.parent = Some(
            named
                .cloned()
                .unwrap_or_else(|| Arc::new(ProcessInfo::bare(p.parent_pid, parent_id, EntityIdSource::Event))),
        );
    }
    rec.process = Some(Arc::new(p));
    Ok(rec)
}

/// What `/proc` and the table said about the process.
fn process_fields(o: Obj<'_>, p: &mut ProcessInfo) -> Result<(), ReadError> {
    if let Some(args) = o.array("argv")? {
        p.program.argv = Some(Arc::new(argv(o, args)?));
    }
    if let Some(path) = o.str("exe")? {
        p.program.exe = Some(ExeInfo {
            path: BStr::from(path),
            deleted: o.bool("exe_deleted")?.unwrap_or(false),
            memfd: o.bool("exe_memfd")?.unwrap_or(false),
            truncated: o.bool("exe_truncated")?.unwrap_or(false),
        });
    }
    p.cwd = o.str("cwd")?.map(BStr::from);
    p.creds.ruid = o.u32("uid")?;
    p.creds.euid = o.u32("euid")?;
    p.creds.rgid = o.u32("gid")?;
    p.creds.egid = o.u32("egid")?;
    let (pgid, sid) = (o.pid("pgid")?, o.pid("sid")?);
    if pgid.is_some() || sid.is_some() {
        // The native JSON has no start time; these keys are there when `/proc` was read.
        p.start_ticks = Some(0);
        p.pgid = pgid.unwrap_or(0);
        p.sid = sid.unwrap_or(0);
        if let Some(t) = o.str("tty")? {
            p.tty_nr = crate::tty::parse(t).map_or(0, |nr| nr as i32);
        }
    }
    p.kthread = o.bool("kthread")?.unwrap_or(false);
    if let Some(path) = o.str("cgroup")? {
        p.cgroup = Some(Arc::new(cgroup(o, path)?));
    }
    p.namespaces.pid_ns = o.u64("pid_ns")?;
    p.namespaces.mnt_ns = o.u64("mnt_ns")?;
    if let Some(levels) = o.array("nspid")? {
        let levels: Option<Vec<i32>> = levels.iter().map(|v| v.as_i64().and_then(|n| i32::try_from(n).ok())).collect();
        p.namespaces.nspid = Some(levels.ok_or(o.wrong("nspid", "an array of pids"))?.into());
    }
    p.truncated = o.bool("truncated")?.unwrap_or(false);
    Ok(())
}

/// The arguments: each exact, from `argv_hex` where it is not UTF-8.
fn argv(o: Obj<'_>, args: &[Value]) -> Result<Argv, ReadError> {
    let hex = o.array("argv_hex")?;
    if hex.is_some_and(|h| h.len() != args.len()) {
        return Err(o.wrong("argv_hex", "as long as argv"));
    }
    let mut bytes = Vec::new();
    for (i, a) in args.iter().enumerate() {
        let text = a.as_str().ok_or(o.wrong("argv", "an array of strings"))?;
        match hex.map(|h| &h[i]) {
            None | Some(Value::Null) => bytes.extend_from_slice(text.as_bytes()),
            Some(Value::String(h)) => bytes.extend_from_slice(&unhex(h).ok_or(o.wrong("argv_hex", "hex or null"))?),
            Some(_) => return Err(o.wrong("argv_hex", "an array of hex strings and nulls")),
        }
        bytes.push(0);
    }
    let count = u32::try_from(args.len()).map_err(|_| o.wrong("argv", "at most 2^32 arguments"))?;
    Ok(Argv { bytes, count, truncated: o.bool("argv_truncated")?.unwrap_or(false) })
}

/// The cgroup path and what it says (as the keys say it, not classified again).
fn cgroup(o: Obj<'_>, path: &str) -> Result<CgroupInfo, ReadError> {
    let mut class = PathClass::default();
    if let Some(id) = o.str("container_id")? {
        let runtime = match o.str("container_runtime")?.ok_or(ReadError::Missing("container_runtime"))? {
            "docker" => Runtime::Docker,
            "containerd" => Runtime::Containerd,
            "cri_o" => Runtime::CriO,
            "podman" => Runtime::Podman,
            "cri" => Runtime::Cri,
            "unknown" => Runtime::Unknown,
            other => return Err(unknown("container_runtime", other)),
        };
        class.container = Some(Container { runtime, id: id.into() });
    }
    if let Some(uid) = o.str("pod_uid")? {
        let qos = match o.str("pod_qos")?.ok_or(ReadError::Missing("pod_qos"))? {
            "guaranteed" => QosClass::Guaranteed,
            "burstable" => QosClass::Burstable,
            "besteffort" => QosClass::BestEffort,
            other => return Err(unknown("pod_qos", other)),
        };
        class.pod = Some(Pod { uid: uid.into(), qos });
    }
    let (unit, slice, user) = (o.str("unit")?, o.str("slice")?, o.u32("unit_user")?);
    if unit.is_some() || slice.is_some() || user.is_some() {
        class.systemd = Some(SystemdUnit { unit: unit.map(Into::into), slice: slice.map(Into::into), user });
    }
    Ok(CgroupInfo {
        raw: BStr::default(),
        path: BStr::from(path),
        v2: false,
        v1: false,
        truncated: o.bool("cgroup_truncated")?.unwrap_or(false),
        class,
    })
}

/// One element of `ancestors`: `{"pid":…,"entity_id":…,"name":…}`.
fn ancestor(v: &Value) -> Result<Arc<ProcessInfo>, ReadError> {
    let o =
        Obj(v.as_object().ok_or(ReadError::Type { key: "ancestors", expected: "an array of objects" })?, "ancestors");
    let pid = o.req_pid("pid")?;
    let id = o.id("entity_id")?.ok_or(ReadError::Missing("ancestors.entity_id"))?;
    let mut p = ProcessInfo::bare(pid, id, EntityIdSource::Event);
    p.program.name = BStr::from(o.str("name")?.unwrap_or_default());
    Ok(Arc::new(p))
}

/// `entry_leader`: `{"pid":…,"entity_id":…,"name":…,"kind":…}`.
fn entry_leader(m: &Map<String, Value>) -> Result<EntryLeader, ReadError> {
    let o = Obj(m, "entry_leader");
    let kind = match o.str("kind")?.ok_or(ReadError::Missing("entry_leader.kind"))? {
        "login" => EntryLeaderKind::Login,
        "cron" => EntryLeaderKind::Cron,
        "systemd_unit" => EntryLeaderKind::SystemdUnit,
        "container" => EntryLeaderKind::Container,
        "init" => EntryLeaderKind::Init,
        "kthread" => EntryLeaderKind::Kthread,
        "unknown" => EntryLeaderKind::Unknown,
        other => return Err(unknown("entry_leader.kind", other)),
    };
    Ok(EntryLeader {
        pid: o.req_pid("pid")?,
        entity_id: o.id("entity_id")?.ok_or(ReadError::Missing("entry_leader.entity_id"))?,
        name: BStr::from(o.str("name")?.unwrap_or_default()),
        kind,
    })
}

fn source(s: &str) -> Result<EntityIdSource, ReadError> {
    Ok(match s {
        "stat" => EntityIdSource::Stat,
        "fork_event" => EntityIdSource::ForkEvent,
        "event" => EntityIdSource::Event,
        other => return Err(unknown("entity_id_source", other)),
    })
}

fn status(s: &str) -> Result<EnrichStatus, ReadError> {
    Ok(match s {
        "ok" => EnrichStatus::Ok,
        "partial" => EnrichStatus::Partial,
        "gone" => EnrichStatus::Gone,
        "pid_reused" => EnrichStatus::PidReused,
        other => return Err(unknown("enrichment", other)),
    })
}

fn unknown(key: &'static str, value: &str) -> ReadError {
    ReadError::Value { key, value: cut(value) }
}

/// At most 64 bytes of `s`, for an error.
fn cut(s: &str) -> String {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Lowercase or uppercase hex digits, two per byte.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// An object and the name it has in errors (`""` at the top).
#[derive(Clone, Copy)]
struct Obj<'a>(&'a Map<String, Value>, &'static str);

impl<'a> Obj<'a> {
    /// The value of `k`; `null` counts as absent.
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &'static str, expected: &'static str) -> ReadError {
        ReadError::Type { key: if self.1.is_empty() { key } else { self.1 }, expected }
    }

    fn str(&self, k: &'static str) -> Result<Option<&'a str>, ReadError> {
        self.get(k).map(|v| v.as_str().ok_or(self.wrong(k, "a string"))).transpose()
    }

    fn bool(&self, k: &'static str) -> Result<Option<bool>, ReadError> {
        self.get(k).map(|v| v.as_bool().ok_or(self.wrong(k, "a boolean"))).transpose()
    }

    fn u64(&self, k: &'static str) -> Result<Option<u64>, ReadError> {
        self.get(k).map(|v| v.as_u64().ok_or(self.wrong(k, "an unsigned integer"))).transpose()
    }

    fn u32(&self, k: &'static str) -> Result<Option<u32>, ReadError> {
        let v = self.u64(k)?;
        v.map(|n| u32::try_from(n).map_err(|_| self.wrong(k, "a 32-bit unsigned integer"))).transpose()
    }

    fn pid(&self, k: &'static str) -> Result<Option<i32>, ReadError> {
        let v = self.get(k).map(|v| v.as_i64().ok_or(self.wrong(k, "an integer"))).transpose()?;
        v.map(|n| i32::try_from(n).map_err(|_| self.wrong(k, "a 32-bit integer"))).transpose()
    }

    fn array(&self, k: &'static str) -> Result<Option<&'a [Value]>, ReadError> {
        self.get(k).map(|v| v.as_array().map(Vec::as_slice).ok_or(self.wrong(k, "an array"))).transpose()
    }

    fn object(&self, k: &'static str) -> Result<Option<&'a Map<String, Value>>, ReadError> {
        self.get(k).map(|v| v.as_object().ok_or(self.wrong(k, "an object"))).transpose()
    }

    fn hex(&self, k: &'static str) -> Result<Option<Vec<u8>>, ReadError> {
        self.str(k)?.map(|s| unhex(s).ok_or(self.wrong(k, "hex"))).transpose()
    }

    fn id(&self, k: &'static str) -> Result<Option<EntityId>, ReadError> {
        let Some(b) = self.hex(k)? else { return Ok(None) };
        let id: [u8; 16] = b.try_into().map_err(|_| self.wrong(k, "32 hex digits"))?;
        Ok(Some(EntityId(id)))
    }

    fn req_u64(&self, k: &'static str) -> Result<u64, ReadError> {
        self.u64(k)?.ok_or(ReadError::Missing(k))
    }

    fn req_u32(&self, k: &'static str) -> Result<u32, ReadError> {
        self.u32(k)?.ok_or(ReadError::Missing(k))
    }

    fn req_i64(&self, k: &'static str) -> Result<i64, ReadError> {
        self.get(k).ok_or(ReadError::Missing(k))?.as_i64().ok_or(self.wrong(k, "an integer"))
    }

    fn req_pid(&self, k: &'static str) -> Result<i32, ReadError> {
        self.pid(k)?.ok_or(ReadError::Missing(k))
    }
}

#[cfg(test)]
mod tests;
