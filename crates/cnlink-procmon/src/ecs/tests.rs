//! ECS documents from tables driven by synthetic events, and their field names against the ECS field list.

use std::collections::{BTreeSet, HashSet};

use cnlink::wire::EventData;
use serde_json::Value;

use super::*;
use crate::fake::{ev, exec, exit, fork, host, thread, FakeProc, P, TICK};
use crate::loss::{LossCause, LostEvents};
use crate::procfs::{Exe, ProcSource, Wants};
use crate::table::record::KernelEvent;
use crate::table::{ProcessTable, TableConfig};

/// The field names of ECS [`ECS_VERSION`] (see the file's header).
const ECS_FIELDS: &str = include_str!("../../tests/data/ecs-fields-9.4.0.txt");

/// The prefix of the fields ECS does not define.
const CUSTOM: &str = "cnlink.";

const ID: &str = "7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8";

/// 2026-11-28T11:00:00Z minus a monotonic clock at 0.
const OFFSET: i128 = 1_795_867_200_000_000_000;

fn docs(w: &EcsWriter) -> Vec<Value> {
    w.bytes()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
        .collect()
}

/// Every leaf's dotted name (arrays of objects add their members' names; arrays of values are one field).
fn flatten(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&name, v, out);
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for i in items {
                flatten(prefix, i, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// A machine with init, an sshd with a login shell on a terminal, a process in a docker container and one in
/// a Kubernetes pod's container (in a nested pid namespace).
fn machine() -> (ProcessTable, FakeProc) {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "systemd", &["/sbin/init", "splash"]).obs());
    let sshd = "0::/system.slice/ssh.service\n";
    fake.procs.insert(50, P { cgroup: sshd, ..P::new(50, 1, TICK, "sshd", &["sshd: /usr/sbin/sshd -D"]) }.obs());
    let session = "0::/user.slice/user-1000.slice/session-3.scope\n";
    let bash = P { cgroup: session, tty: 0x8801, sid: 60, ..P::new(60, 50, 2 * TICK, "bash", &["-bash"]) };
    fake.procs.insert(60, bash.obs());
    let docker: &'static str = Box::leak(format!("0::/system.slice/docker-{ID}.scope\n").into_boxed_str());
    fake.procs
        .insert(70, P { cgroup: docker, ..P::new(70, 1, 3 * TICK, "nginx", &["nginx", "-g", "daemon off;"]) }.obs());
    let pod: &'static str = Box::leak(
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod63b3ebfc_2890_11e9_8154_16bf8ef8d9dc.slice/cri-containerd-{ID}.scope\n"
        )
        .into_boxed_str(),
    );
    let app = P { cgroup: pod, nspid: vec![80, 1], ..P::new(80, 1, 4 * TICK, "app", &["/app", "--serve"]) };
    fake.procs.insert(80, app.obs());
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    (t, fake)
}

/// Every kind of event, about the machine's processes.
fn every_event(t: &mut ProcessTable, fake: &mut FakeProc, w: &mut EcsWriter) {
    // The shell forks 61, which runs a program from a memfd with an argument that is not UTF-8.
    let mut child = P { tty: 0x8801, sid: 60, ..P::new(61, 60, 5 * TICK, "bash", &["-bash"]) }.obs();
    fake.procs.insert(61, child.clone());
    let mut events: Vec<KernelEvent> = vec![fork(5 * TICK, 60, 61)];
    child = P { tty: 0x8801, sid: 60, ..P::new(61, 60, 5 * TICK, "x", &["x"]) }.obs();
    child.argv = Some(crate::procfs::parse::parse_cmdline(b"x\0caf\xe9 \"q\"\n\0", 16, 1024, false));
    child.exe = Some(Exe { path: b"/memfd:x".to_vec(), deleted: true, memfd: true, truncated: false });
    child.cwd = Some(crate::procfs::PathRead { path: b"/home/u".to_vec(), truncated: false });
    let pid = |p| (p, p);
    let (p, t61) = pid(61);
    events.extend([
        ev(5 * TICK + 1, EventData::Exec { process_pid: p, process_tgid: t61 }),
        thread(5 * TICK + 2, 61, 62),
        ev(5 * TICK + 3, EventData::Comm { process_pid: 62, process_tgid: 61, comm: *b"worker\0\0\0\0\0\0\0\0\0\0" }),
        ev(5 * TICK + 4, EventData::Comm { process_pid: 61, process_tgid: 61, comm: *b"renamed\0\0\0\0\0\0\0\0\0" }),
        ev(5 * TICK + 5, EventData::Uid { process_pid: 61, process_tgid: 61, ruid: 0, euid: 0 }),
        ev(5 * TICK + 6, EventData::Gid { process_pid: 61, process_tgid: 61, rgid: 0, egid: 0 }),
        ev(5 * TICK + 7, EventData::Sid { process_pid: 61, process_tgid: 61 }),
        ev(5 * TICK + 8, EventData::Ptrace { process_pid: 61, process_tgid: 61, tracer_pid: 60, tracer_tgid: 60 }),
        ev(5 * TICK + 9, EventData::Ptrace { process_pid: 61, process_tgid: 61, tracer_pid: 0, tracer_tgid: 0 }),
        exit(6 * TICK, 62, 61, 60),
        ev(6 * TICK + 1, EventData::Coredump { process_pid: 61, process_tgid: 61, parent_pid: 60, parent_tgid: 60 }),
        ev(
            6 * TICK + 2,
            EventData::Exit {
                process_pid: 61,
                process_tgid: 61,
                exit_code: 0x8b,
                exit_signal: 17,
                parent_pid: 60,
                parent_tgid: 60,
            },
        ),
        // Containers: an exec in the docker container, an exit in the pod.
        exec(7 * TICK, 70),
        exit(7 * TICK + 1, 80, 80, 1),
        // A process never seen and already gone.
        exit(7 * TICK + 2, 999, 999, 50),
        ev(
            7 * TICK + 3,
            EventData::Unknown { what: 0x4000_0000, len: 24, data: [7; cnlink::wire::proc_event::UNKNOWN_DATA_MAX] },
        ),
        ev(7 * TICK + 4, EventData::Ack { err: 0 }),
    ]);
    for (i, e) in events.iter().enumerate() {
        if i == 1 {
            fake.procs.insert(61, child.clone());
        }
        if matches!(e.data, EventData::Coredump { .. }) {
            fake.procs.remove(&61);
        }
        let rec = t.handle(e, fake);
        w.record(&rec);
    }
    w.loss(&LostEvents { count: Some(12), exact: false, ..LostEvents::exact(LossCause::SeqGap, 0, 8 * TICK) });
}

fn writer() -> EcsWriter {
    let mut w = EcsWriter::new(&host()).host_name("web-1");
    w.set_realtime_offset(OFFSET);
    w
}

#[test]
fn every_field_is_in_the_ecs_reference_or_custom() {
    let reference: HashSet<&str> = ECS_FIELDS.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(reference.contains("process.entry_leader.entry_meta.type") && reference.len() > 2000);
    let (mut t, mut fake) = machine();
    let mut w = writer();
    every_event(&mut t, &mut fake, &mut w);
    let docs = docs(&w);
    assert_eq!(docs.len(), 19);
    let mut names = BTreeSet::new();
    for d in &docs {
        flatten("", d, &mut names);
    }
    let unknown: Vec<&String> =
        names.iter().filter(|n| !reference.contains(n.as_str()) && !n.starts_with(CUSTOM)).collect();
    assert!(unknown.is_empty(), "not ECS {ECS_VERSION} fields and not under {CUSTOM}: {unknown:?}");
    // The documents cover what the writer can write.
    for want in [
        "@timestamp",
        "ecs.version",
        "event.kind",
        "event.category",
        "event.type",
        "event.action",
        "event.sequence",
        "event.id",
        "event.dataset",
        "process.pid",
        "process.entity_id",
        "process.name",
        "process.executable",
        "process.args",
        "process.args_count",
        "process.command_line",
        "process.working_directory",
        "process.start",
        "process.end",
        "process.exit_code",
        "process.thread.id",
        "process.user.id",
        "process.real_user.id",
        "process.group.id",
        "process.real_group.id",
        "process.group_leader.pid",
        "process.group_leader.entity_id",
        "process.session_leader.pid",
        "process.session_leader.entity_id",
        "process.interactive",
        "process.tty.char_device.major",
        "process.tty.char_device.minor",
        "process.vpid",
        "process.parent.pid",
        "process.parent.entity_id",
        "process.parent.name",
        "process.parent.executable",
        "process.parent.args",
        "process.parent.start",
        "process.entry_leader.pid",
        "process.entry_leader.entity_id",
        "process.entry_leader.name",
        "process.entry_leader.executable",
        "process.entry_leader.start",
        "process.entry_leader.same_as_process",
        "process.entry_leader.entry_meta.type",
        "process.previous.executable",
        "process.previous.args",
        "host.id",
        "host.name",
        "host.boot.id",
        "container.id",
        "container.runtime",
        "orchestrator.type",
        "orchestrator.resource.type",
        "orchestrator.resource.id",
        "cnlink.ancestors.entity_id",
        "cnlink.exit.signal",
        "cnlink.exe.memfd",
        "cnlink.cgroup.unit",
        "cnlink.cgroup.pod_qos",
        "cnlink.loss.count",
        "cnlink.unknown.what",
        "cnlink.tracer.pid",
        "cnlink.previous.name",
        "cnlink.previous.user_id",
        "cnlink.previous.sid",
    ] {
        assert!(names.contains(want), "no document has {want}");
    }
    let actions: Vec<&str> = docs.iter().map(|d| d["event"]["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "fork",
            "exec",
            "clone",
            "comm_change",
            "comm_change",
            "uid_change",
            "gid_change",
            "sid_change",
            "ptrace_attach",
            "ptrace_detach",
            "thread_exit",
            "coredump",
            "exit",
            "exec",
            "exit",
            "exit",
            "unknown",
            "ack",
            "lost"
        ]
    );
}

#[test]
fn documents_hold_what_the_table_knows() {
    let (mut t, mut fake) = machine();
    let mut w = writer();
    every_event(&mut t, &mut fake, &mut w);
    let docs = docs(&w);
    let find = |action: &str, pid: i64| {
        docs.iter()
            .find(|d| d["event"]["action"] == action && d["process"]["pid"] == pid)
            .unwrap_or_else(|| panic!("no {action} of {pid}"))
    };
    let exec = find("exec", 61);
    let e = &exec["event"];
    assert_eq!(
        e["id"].as_str().unwrap(),
        event_id(&host(), 0, exec["cnlink"]["seq"].as_u64().unwrap() as u32, 5 * TICK + 1)
    );
    assert_eq!(
        (e["kind"].as_str(), e["type"][0].as_str(), e["dataset"].as_str()),
        (Some("event"), Some("start"), Some(DATASET))
    );
    assert_eq!(e["sequence"], 2);
    assert_eq!(exec["@timestamp"], "2026-11-28T12:00:00.050000001Z");
    let p = &exec["process"];
    // Bytes that are not UTF-8 become U+FFFD; quotes and newlines are JSON-escaped (the line stays one line).
    assert_eq!(p["args"], serde_json::json!(["x", "caf\u{fffd} \"q\"\n"]));
    assert_eq!(p["command_line"], "x caf\u{fffd} \"q\"\n");
    assert_eq!((p["executable"].as_str(), p["working_directory"].as_str()), (Some("/memfd:x"), Some("/home/u")));
    assert_eq!(exec["cnlink"]["exe"], serde_json::json!({"deleted": true, "memfd": true}));
    assert_eq!(p["previous"][0]["executable"], "/usr/bin/bash");
    let ids = |pid| t.lookup(pid).unwrap().entity_id.to_string();
    assert_eq!(p["entity_id"].as_str().unwrap(), ids(61));
    assert_eq!((p["parent"]["pid"].as_i64(), p["parent"]["entity_id"].as_str()), (Some(60), Some(&*ids(60))));
    assert_eq!(p["parent"]["args"][0], "-bash");
    let l = &p["entry_leader"];
    assert_eq!((l["pid"].as_i64(), l["entry_meta"]["type"].as_str()), (Some(60), Some("login")));
    assert_eq!((l["entity_id"].as_str(), l["same_as_process"].as_bool()), (Some(&*ids(60)), Some(false)));
    assert_eq!(p["session_leader"]["entity_id"].as_str(), Some(&*ids(60)));
    assert_eq!(
        (p["tty"]["char_device"]["major"].as_u64(), p["tty"]["char_device"]["minor"].as_u64()),
        (Some(136), Some(1))
    );
    assert_eq!((p["user"]["id"].as_str(), p["real_user"]["id"].as_str()), (Some("1000"), Some("1000")));
    let chain: Vec<i64> =
        exec["cnlink"]["ancestors"].as_array().unwrap().iter().map(|a| a["pid"].as_i64().unwrap()).collect();
    assert_eq!(chain, [60, 50, 1]);
    assert_eq!(
        exec["host"],
        serde_json::json!({"id": "0123456789abcdef0123456789abcdef", "name": "web-1", "boot": {"id": "ba9c04d6-63df-4a14-bbdd-20583d11a1b5"}})
    );
    assert!(exec.get("container").is_none());

    // A death by SIGSEGV with a core: 128 + 11, and the details under cnlink.exit.
    let x = find("exit", 61);
    assert_eq!(x["process"]["exit_code"], 139);
    assert_eq!(x["process"]["end"], "2026-11-28T12:00:00.060000002Z");
    assert_eq!(
        x["cnlink"]["exit"],
        serde_json::json!({"status": 139, "signal": 11, "core_dumped": true, "exit_signal": 17})
    );
    assert_eq!(x["cnlink"]["lifetime_ns"].as_u64(), Some(TICK + 2));
    assert_eq!(x["process"]["user"]["id"], "0", "after the uid event");
    let uid = find("uid_change", 61);
    assert_eq!(uid["cnlink"]["previous"], serde_json::json!({"real_user_id": 1000, "user_id": 1000}));
    assert_eq!(find("comm_change", 61)["cnlink"]["comm"], "worker", "a thread's new name; the process keeps its own");

    // Containers and pods.
    let c = find("exec", 70);
    assert_eq!(c["container"], serde_json::json!({"id": ID, "runtime": "docker"}));
    assert_eq!(c["process"]["entry_leader"]["entry_meta"]["type"], "container");
    let k = find("exit", 80);
    assert_eq!(k["container"]["runtime"], "containerd");
    assert_eq!(k["process"]["vpid"], 1);
    assert_eq!(
        k["orchestrator"],
        serde_json::json!({"type": "kubernetes", "resource": {"type": "pod", "id": "63b3ebfc-2890-11e9-8154-16bf8ef8d9dc"}})
    );

    // A process the table could not identify: the event's own facts only.
    let gone = find("exit", 999);
    assert_eq!(gone["process"]["parent"], serde_json::json!({"pid": 50}));
    assert_eq!(
        (gone["cnlink"]["enrich_status"].as_str(), gone["cnlink"]["entity_id_source"].as_str()),
        (Some("gone"), Some("event"))
    );
    assert!(gone["process"].get("name").is_none());
    // No process at all: no process object.
    let unknown = docs.iter().find(|d| d["event"]["action"] == "unknown").unwrap();
    assert!(unknown.get("process").is_none());

    let lost = docs.last().unwrap();
    assert_eq!((lost["event"]["kind"].as_str(), lost["event"]["action"].as_str()), (Some("metric"), Some("lost")));
    assert_eq!(lost["cnlink"]["loss"], serde_json::json!({"count": 12, "exact": false, "cause": "seq_gap"}));
    assert_eq!(lost["event"]["sequence"], 19);
}
