use cnlink_procmon::{LossCause, LostEvents};

use super::*;
use crate::monitor::testkit::{exit, handle, machine, process, TICK};

fn parse(w: &JsonWriter) -> serde_json::Value {
    serde_json::from_slice(w.bytes()).expect("valid JSON")
}

fn line(rec: &ProcRecord) -> serde_json::Value {
    let mut w = JsonWriter::new();
    record(&mut w, rec, &mut Fragments::default());
    assert!(w.bytes().ends_with(b"}\n") && w.bytes().iter().filter(|&&b| b == b'\n').count() == 1);
    parse(&w)
}

#[test]
fn escapes_strings() {
    let mut w = JsonWriter::new();
    w.begin();
    w.str_field("s", "a\"b\\c\nd\u{1}é");
    w.bytes_field("b", b"x\xffy");
    w.end();
    let v = parse(&w);
    assert_eq!(v["s"], "a\"b\\c\nd\u{1}é");
    assert_eq!(v["b"], "x\u{fffd}y");
}

#[test]
fn a_fork_exec_exit_chain_has_the_kernel_fields_ids_and_ancestry() {
    let (mut t, mut fake) = machine();
    fake.0.insert(200, process(200, 100, 2, "bash", &[b"bash"], 1000));
    let f = line(&handle(
        &mut t,
        &mut fake,
        2 * TICK,
        EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 200, child_tgid: 200 },
    ));
    assert_eq!(
        (f["event"].as_str(), f["child_pid"].as_i64(), f["thread"].as_bool()),
        (Some("fork"), Some(200), Some(false))
    );
    fake.0.insert(200, process(200, 100, 2, "sleep", &[b"sleep", b"a b", b"\xffz"], 1000));
    let e = line(&handle(&mut t, &mut fake, 2 * TICK + 1, EventData::Exec { process_pid: 200, process_tgid: 200 }));
    let x = line(&handle(&mut t, &mut fake, 5 * TICK, exit(200, 100, 768)));
    let id = f["entity_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!((e["entity_id"].as_str(), x["entity_id"].as_str()), (Some(id), Some(id)));
    assert_eq!(f["parent_entity_id"], e["parent_entity_id"]);
    assert_eq!((e["entity_id_source"].as_str(), e["enrichment"].as_str()), (Some("stat"), Some("ok")));
    assert_eq!(e["argv"], serde_json::json!(["sleep", "a b", "\u{fffd}z"]));
    assert_eq!(e["argv_hex"], serde_json::json!([null, null, "ff7a"]));
    assert_eq!(
        (e["exe"].as_str(), e["exe_deleted"].as_bool(), e["exe_memfd"].as_bool()),
        (Some("/usr/bin/sleep"), Some(false), Some(false))
    );
    assert_eq!(
        (e["uid"].as_u64(), e["euid"].as_u64(), e["gid"].as_u64(), e["egid"].as_u64()),
        (Some(1000), Some(1000), Some(100), Some(100))
    );
    assert_eq!((e["tty"].as_str(), e["sid"].as_i64(), e["pgid"].as_i64()), (Some("pts/1"), Some(200), Some(200)));
    assert_eq!(e["nspid"], serde_json::json!([200]));
    let pids = |v: &serde_json::Value| {
        v["ancestors"].as_array().unwrap().iter().map(|a| a["pid"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!((pids(&e), pids(&x)), (vec![100, 1], vec![100, 1]));
    assert_eq!(e["ancestors"][0]["name"], "bash");
    assert_eq!(e["ancestors"][0]["entity_id"], f["parent_entity_id"]);
    assert_eq!(e["entry_leader"]["kind"], "login", "a session leader with a terminal: {e}");
    assert!(x.get("entry_leader").is_none() && f.get("ancestors").is_none());
    assert_eq!(
        (x["exit_code"].as_u64(), x["code"].as_u64(), x["lifetime_ns"].as_u64()),
        (Some(768), Some(3), Some(3 * TICK))
    );
    assert_eq!(x["comm"], "sleep");
    assert_eq!(x["cmdline"], "sleep a b \u{fffd}z");
    assert!(x.get("signal").is_none());
}

#[test]
fn signal_exits_threads_and_unknown_processes() {
    let (mut t, mut fake) = machine();
    let data = EventData::Exit {
        process_pid: 5,
        process_tgid: 4,
        exit_code: 9,
        exit_signal: u32::MAX,
        parent_pid: 0,
        parent_tgid: 0,
    };
    let v = line(&handle(&mut t, &mut fake, TICK, data));
    assert_eq!(
        (v["signal"].as_u64(), v["thread"].as_bool(), v["exit_signal"].as_i64()),
        (Some(9), Some(true), Some(-1))
    );
    assert_eq!((v["entity_id_source"].as_str(), v["enrichment"].as_str()), (Some("event"), Some("gone")));
    assert!(v.get("comm").is_none());
}

#[test]
fn comm_and_uid_changes_say_what_was_before() {
    let (mut t, mut fake) = machine();
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"w\x1bk\xff");
    let c = line(&handle(&mut t, &mut fake, TICK, EventData::Comm { process_pid: 100, process_tgid: 100, comm }));
    assert_eq!((c["comm"].as_str(), c["old_comm"].as_str()), (Some("w\u{1b}k\u{fffd}"), Some("bash")));
    let u = line(&handle(
        &mut t,
        &mut fake,
        TICK,
        EventData::Uid { process_pid: 100, process_tgid: 100, ruid: 0, euid: 0 },
    ));
    assert_eq!((u["ruid"].as_u64(), u["old_uid"].as_u64(), u["uid"].as_u64()), (Some(0), Some(1000), Some(0)));
}

#[test]
fn process_fields_are_formatted_once_and_follow_changes() {
    let (mut t, mut fake) = machine();
    let mut frags = Fragments::default();
    let thread = |tid| EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: tid, child_tgid: 100 };
    let a = handle(&mut t, &mut fake, TICK, thread(101));
    let b = handle(&mut t, &mut fake, TICK, thread(102));
    assert!(Arc::ptr_eq(a.process.as_ref().unwrap(), b.process.as_ref().unwrap()));
    let mut w = JsonWriter::new();
    record(&mut w, &a, &mut frags);
    let first = w.bytes().to_vec();
    w.clear();
    record(&mut w, &a, &mut frags);
    assert_eq!(w.bytes(), first);
    // A change makes a new value, with new fields.
    let _ = handle(&mut t, &mut fake, TICK, EventData::Uid { process_pid: 100, process_tgid: 100, ruid: 7, euid: 7 });
    let c = handle(&mut t, &mut fake, TICK, thread(103));
    w.clear();
    record(&mut w, &c, &mut frags);
    assert_eq!(parse(&w)["uid"], 7);
}

#[test]
fn lost_records() {
    let mut w = JsonWriter::new();
    lost(&mut w, &LostEvents::exact(LossCause::Queue, 42, 1));
    let v = parse(&w);
    assert_eq!(
        (v["event"].as_str(), v["count"].as_u64(), v["exact"].as_bool(), v["cause"].as_str()),
        (Some("lost"), Some(42), Some(true), Some("queue_overflow"))
    );
    assert!(v["cpu"].is_null());
    w.clear();
    lost(&mut w, &LostEvents { cause: LossCause::SocketDrops, count: None, exact: false, cpu: None, timestamp_ns: 1 });
    let v = parse(&w);
    assert!(v["count"].is_null());
    assert_eq!(v["exact"].as_bool(), Some(false));
}

#[test]
fn bare_events_for_listen_and_send() {
    let mut w = JsonWriter::new();
    event(
        &mut w,
        &cnlink::proc::Event {
            seq: 3,
            cpu: 0,
            timestamp_ns: 9,
            data: EventData::Exec { process_pid: 4, process_tgid: 4 },
        },
    );
    let v = parse(&w);
    assert_eq!((v["event"].as_str(), v["pid"].as_i64(), v["seq"].as_u64()), (Some("exec"), Some(4), Some(3)));
    assert_eq!(v.as_object().unwrap().len(), 6);
}
