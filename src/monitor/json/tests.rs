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

mod read_back {
    //! `write(read(write(rec))) == write(rec)`, byte for byte, for every kind of record the table makes.

    use cnlink_procmon::native_json;
    use cnlink_procmon::procfs::parse::{parse_cmdline, parse_stat};
    use cnlink_procmon::procfs::{CgroupFile, PathRead};
    use cnlink_procmon::MonitorItem;

    use super::*;

    fn write(item: &MonitorItem) -> Vec<u8> {
        let mut w = JsonWriter::new();
        match item {
            MonitorItem::Record(r) => record(&mut w, r, &mut Fragments::default()),
            MonitorItem::Lost(l) => lost(&mut w, l),
        }
        w.bytes().to_vec()
    }

    fn same_again(item: &MonitorItem) -> Vec<u8> {
        let first = write(item);
        let back = native_json::read(&first).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&first)));
        let second = write(&back);
        assert_eq!(String::from_utf8_lossy(&second), String::from_utf8_lossy(&first));
        assert_eq!(second, first);
        // And once more through the reader: a fixed point.
        assert_eq!(write(&native_json::read(&second).unwrap()), first);
        first
    }

    /// A process in a container of a Kubernetes pod, with a working directory and a deleted program.
    fn contained(pid: i32, ppid: i32) -> cnlink_procmon::Observation {
        let mut o = process(pid, ppid, 6, "nginx", &[b"nginx", b"-g", b"daemon off;"], 101);
        let id = "4f".repeat(32);
        let path = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12ab_34cd.slice/cri-containerd-{id}.scope\n"
        );
        o.cgroup = Some(CgroupFile { bytes: path.into_bytes(), truncated: true });
        o.cwd = Some(PathRead { path: b"/srv/\x1b[31m".to_vec(), truncated: false });
        if let Some(e) = &mut o.exe {
            e.deleted = true;
        }
        if let Some(s) = &mut o.status_fields {
            s.nspid = vec![pid, 1];
        }
        o
    }

    #[test]
    fn every_kind_of_record_reads_back_to_the_same_bytes() {
        let (mut t, mut fake) = machine();
        let mut items = Vec::new();
        let mut push = |r: ProcRecord| items.push(MonitorItem::Record(r));
        // A child of the shell that execs a program with arguments that are not UTF-8, cut at two.
        push(handle(
            &mut t,
            &mut fake,
            2 * TICK,
            EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 200, child_tgid: 200 },
        ));
        let mut o = process(200, 100, 2, "sleep", &[b"sleep", b"\xff\xfe", b"x"], 1000);
        o.argv = Some(parse_cmdline(b"sleep\0a\xffb\0c \"q\"\\\0dropped\0", 3, 4096, false));
        if let Some(e) = &mut o.exe {
            (e.memfd, e.deleted, e.path) = (true, true, b"/memfd:x (deleted)".to_vec());
        }
        fake.0.insert(200, o);
        push(handle(&mut t, &mut fake, 2 * TICK + 1, EventData::Exec { process_pid: 200, process_tgid: 200 }));
        // Threads: a clone, a thread's rename (ESC and an invalid byte), the leader's rename, the thread's exit.
        push(handle(
            &mut t,
            &mut fake,
            3 * TICK,
            EventData::Fork { parent_pid: 200, parent_tgid: 200, child_pid: 201, child_tgid: 200 },
        ));
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"w\x1bk\xffz");
        push(handle(&mut t, &mut fake, 3 * TICK + 1, EventData::Comm { process_pid: 201, process_tgid: 200, comm }));
        let mut comm = [0u8; 16];
        comm.copy_from_slice(b"sixteen-bytes-xx");
        push(handle(&mut t, &mut fake, 3 * TICK + 2, EventData::Comm { process_pid: 200, process_tgid: 200, comm }));
        push(handle(
            &mut t,
            &mut fake,
            3 * TICK + 3,
            EventData::Uid { process_pid: 200, process_tgid: 200, ruid: 0, euid: 0 },
        ));
        push(handle(
            &mut t,
            &mut fake,
            3 * TICK + 4,
            EventData::Gid { process_pid: 200, process_tgid: 200, rgid: 5, egid: 6 },
        ));
        push(handle(&mut t, &mut fake, 3 * TICK + 5, EventData::Sid { process_pid: 200, process_tgid: 200 }));
        for tracer in [100, 0] {
            let data =
                EventData::Ptrace { process_pid: 201, process_tgid: 200, tracer_pid: tracer, tracer_tgid: tracer };
            push(handle(&mut t, &mut fake, 3 * TICK + 6, data));
        }
        let data = EventData::Coredump { process_pid: 200, process_tgid: 200, parent_pid: 100, parent_tgid: 100 };
        push(handle(&mut t, &mut fake, 3 * TICK + 7, data));
        let thread_exit = EventData::Exit {
            process_pid: 201,
            process_tgid: 200,
            exit_code: 0,
            exit_signal: u32::MAX,
            parent_pid: 100,
            parent_tgid: 100,
        };
        push(handle(&mut t, &mut fake, 4 * TICK, thread_exit));
        // Death by SIGSEGV with a core, and an exit status that is neither.
        push(handle(&mut t, &mut fake, 5 * TICK, exit(200, 100, 0x8b)));
        push(handle(&mut t, &mut fake, 5 * TICK, exit(999, 1, 0x137f)));
        // A container's process forked by the shell, its exec and a normal exit.
        push(handle(
            &mut t,
            &mut fake,
            6 * TICK,
            EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 300, child_tgid: 300 },
        ));
        fake.0.insert(300, contained(300, 100));
        push(handle(&mut t, &mut fake, 6 * TICK + 1, EventData::Exec { process_pid: 300, process_tgid: 300 }));
        push(handle(&mut t, &mut fake, 7 * TICK, exit(300, 100, 3 << 8)));
        // A systemd service's first process, a user unit's, and a kernel thread.
        for (pid, cgroup) in [
            (400, "0::/system.slice/nginx.service\n"),
            (401, "0::/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service\n"),
        ] {
            let mut o = process(pid, 1, 4, "svc", &[b"/usr/sbin/svc", b"--flag"], 0);
            o.cgroup = Some(CgroupFile { bytes: cgroup.as_bytes().to_vec(), truncated: false });
            fake.0.insert(pid, o);
            push(handle(&mut t, &mut fake, 8 * TICK, EventData::Exec { process_pid: pid, process_tgid: pid }));
        }
        let mut k = process(500, 2, 0, "kworker/0:1", &[], 0);
        k.stat = parse_stat(b"500 (kworker/0:1) S 2 0 0 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0");
        k.argv = Some(parse_cmdline(b"", 1024, 4096, false));
        k.exe = None;
        fake.0.insert(500, k);
        push(handle(
            &mut t,
            &mut fake,
            9 * TICK,
            EventData::Fork { parent_pid: 2, parent_tgid: 2, child_pid: 500, child_tgid: 500 },
        ));
        push(handle(&mut t, &mut fake, 9 * TICK + 1, EventData::Exec { process_pid: 500, process_tgid: 500 }));
        // A kind newer than cnlink.
        let mut data = [0u8; 64];
        data[..3].copy_from_slice(&[1, 2, 0xff]);
        push(handle(&mut t, &mut fake, 10 * TICK, EventData::Unknown { what: 0x4000_0000, len: 3, data }));
        items.push(MonitorItem::Lost(LostEvents::exact(LossCause::SeqGap, 12, 11 * TICK)));
        items.push(MonitorItem::Lost(LostEvents {
            cause: LossCause::Queue,
            count: Some(5),
            exact: false,
            cpu: Some(1),
            timestamp_ns: 12 * TICK,
        }));
        items.push(MonitorItem::Lost(LostEvents {
            cause: LossCause::SocketDrops,
            count: None,
            exact: false,
            cpu: None,
            timestamp_ns: 13 * TICK,
        }));
        let lines: Vec<String> = items.iter().map(|i| String::from_utf8(same_again(i)).unwrap()).collect();
        // The machinery made what the test means to cover.
        let all = lines.concat();
        for needle in [
            "\"argv_hex\":[",
            "\"argv_truncated\":true",
            "\"exe_memfd\":true",
            "\"container_runtime\":\"containerd\"",
            "\"pod_qos\":\"burstable\"",
            "\"cgroup_truncated\":true",
            "\"unit_user\":1000",
            "\"kind\":\"systemd_unit\"",
            "\"kind\":\"login\"",
            "\"kthread\":true",
            "\"nspid\":[300,1]",
            "\"old_comm\":",
            "\"old_uid\":1000",
            "\"signal\":11,\"core_dumped\":true",
            "\"exit_code\":4991",
            "\"entity_id_source\":\"event\"",
            "\"event\":\"unknown\"",
            "\"count\":null",
            "\"tty\":\"pts/1\"",
        ] {
            assert!(all.contains(needle), "no {needle} in\n{all}");
        }
    }
}
