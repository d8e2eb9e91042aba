use super::*;

fn rec(line: &str) -> ProcRecord {
    match read(line.as_bytes()) {
        Ok(MonitorItem::Record(r)) => r,
        other => panic!("{line}: {other:?}"),
    }
}

const ID: &str = "2530e491613173acafea7271ec5d1343";
const PARENT: &str = "9fabab9351956da59b210db5b6c591ad";

#[test]
fn an_exec_with_everything() {
    let line = format!(
        r#"{{"host_id":"h","boot_id":"b","sink_seq":3,"event":"exec","cpu":1,"seq":4,"timestamp_ns":5,"pid":42,
        "tgid":42,"entity_id":"{ID}","entity_id_source":"stat","parent_entity_id":"{PARENT}","enrichment":"partial",
        "comm":"sh","cmdline":"sh -c x","argv":["sh","\ufffdz","-c"],"argv_hex":[null,"ff7a",null],
        "argv_truncated":true,"exe":"/usr/bin/dash","exe_deleted":true,"exe_memfd":false,"cwd":"/tmp","uid":0,
        "euid":1,"gid":2,"egid":3,"pgid":40,"sid":41,"tty":"pts/3","cgroup":"/system.slice/docker-x.scope",
        "container_id":"{c}","container_runtime":"docker","pod_uid":"u-1","pod_qos":"burstable",
        "unit":"docker-x.scope","slice":"system.slice","unit_user":1000,"pid_ns":7,"mnt_ns":8,"nspid":[42,1],
        "truncated":true,"ancestors":[{{"pid":40,"entity_id":"{PARENT}","name":"bash"}}],
        "entry_leader":{{"pid":40,"entity_id":"{PARENT}","name":"bash","kind":"login"}},"new_key":[1,{{}}]}}"#,
        c = "a".repeat(64)
    );
    let r = rec(&line);
    assert_eq!((r.event.cpu, r.event.seq, r.event.timestamp_ns), (1, 4, 5));
    assert_eq!(r.event.data, EventData::Exec { process_pid: 42, process_tgid: 42 });
    assert_eq!(r.entity_id.unwrap().to_string(), ID);
    assert_eq!((r.entity_id_source, r.status, r.tid), (Some(EntityIdSource::Stat), EnrichStatus::Partial, None));
    let p = r.process.as_deref().unwrap();
    let argv = p.program.argv.as_deref().unwrap();
    assert_eq!(argv.args().collect::<Vec<_>>(), [&b"sh"[..], b"\xffz", b"-c"]);
    assert!(argv.truncated);
    let exe = p.program.exe.as_ref().unwrap();
    assert_eq!((exe.path.as_bytes(), exe.deleted, exe.memfd), (&b"/usr/bin/dash"[..], true, false));
    assert_eq!((p.creds.ruid, p.creds.euid, p.creds.rgid, p.creds.egid), (Some(0), Some(1), Some(2), Some(3)));
    assert_eq!((p.pgid, p.sid, crate::tty::name(p.tty_nr as u32).as_str()), (40, 41, "pts/3"));
    let cg = p.cgroup.as_deref().unwrap();
    assert_eq!(cg.class.container.as_ref().map(|c| c.runtime), Some(Runtime::Docker));
    assert_eq!(cg.class.pod.as_ref().map(|p| p.qos), Some(QosClass::Burstable));
    assert_eq!(cg.class.systemd.as_ref().and_then(|s| s.user), Some(1000));
    assert_eq!(p.namespaces.nspid.as_deref(), Some(&[42, 1][..]));
    assert!(p.truncated);
    assert_eq!(r.ancestors.len(), 1);
    assert_eq!((r.ancestors[0].pid, r.ancestors[0].program.name.as_bytes()), (40, &b"bash"[..]));
    let parent = r.parent.as_deref().unwrap();
    assert_eq!((parent.pid, parent.program.name.as_bytes()), (40, &b"bash"[..]));
    let l = r.entry_leader().unwrap();
    assert_eq!((l.pid, l.kind), (40, EntryLeaderKind::Login));
}

#[test]
fn renames_thread_exits_and_losses() {
    let c = rec(&format!(
        r#"{{"event":"comm","cpu":0,"seq":1,"timestamp_ns":2,"pid":5,"tgid":5,"comm":"new","old_comm":"old",
        "entity_id":"{ID}","entity_id_source":"event","enrichment":"gone"}}"#
    ));
    assert_eq!(c.process.as_ref().unwrap().program.name, "new");
    assert_eq!(c.previous.as_ref().unwrap().program.name, "old");
    // Sixteen bytes at most, cut at a character boundary.
    let long = rec(r#"{"event":"comm","cpu":0,"seq":1,"timestamp_ns":2,"pid":5,"tgid":5,"comm":"ééééééééé"}"#);
    let EventData::Comm { comm, .. } = long.event.data else { panic!() };
    assert_eq!(&comm[..], "éééééééé".as_bytes());
    let x = rec(&format!(
        r#"{{"event":"exit","cpu":0,"seq":1,"timestamp_ns":100,"pid":6,"tgid":5,"thread":true,"exit_code":9,
        "signal":9,"core_dumped":false,"exit_signal":-1,"parent_pid":0,"parent_tgid":0,"entity_id":"{ID}",
        "entity_id_source":"stat","enrichment":"ok","ancestors":[],"lifetime_ns":30}}"#
    ));
    assert_eq!(x.tid, Some(6));
    let EventData::Exit { exit_signal, .. } = x.event.data else { panic!() };
    assert_eq!((exit_signal, x.lifetime_ns), (u32::MAX, Some(30)));
    assert_eq!(x.process.as_ref().unwrap().start_ns, None, "a thread's lifetime is not its process's");
    let MonitorItem::Lost(l) = read(
        br#"{"event":"lost","cpu":null,"seq":null,"timestamp_ns":7,"count":null,"exact":false,"cause":"socket_drops"}"#,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((l.cause, l.count, l.exact, l.timestamp_ns), (LossCause::SocketDrops, None, false, 7));
}

#[test]
fn what_is_not_a_record_is_a_typed_error() {
    let cases: &[(&str, &str)] = &[
        ("", "not JSON"),
        ("[1]", "not a JSON object"),
        ("{}", "no \"event\""),
        (r#"{"event":"stats","received":1}"#, "not a process event"),
        (r#"{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":1}"#, "no \"tgid\""),
        (r#"{"event":"exec","cpu":-1,"seq":1,"timestamp_ns":2,"pid":1,"tgid":1}"#, "\"cpu\" is not"),
        (r#"{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":1e99,"tgid":1}"#, "\"pid\" is not"),
        (r#"{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":3000000000,"tgid":1}"#, "\"pid\" is not"),
        (r#"{"event":"fork","cpu":0,"seq":1,"timestamp_ns":"2"}"#, "\"parent_pid\""),
        (r#"{"event":"lost","timestamp_ns":2,"count":1,"exact":true,"cause":"x"}"#, "unknown value"),
        (r#"{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":1,"tgid":1,"entity_id":"ab"}"#, "32 hex"),
        (r#"{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":1,"tgid":1,"entity_id":"zz"}"#, "hex"),
        (r#"{"event":"unknown","cpu":0,"seq":1,"timestamp_ns":2,"what":9,"len":70000,"data":""}"#, "16-bit"),
    ];
    for (line, says) in cases {
        let e = read(line.as_bytes()).expect_err(line);
        assert!(e.to_string().contains(says), "{line}: {e}");
    }
    let bad_argv = format!(
        r#"{{"event":"exec","cpu":0,"seq":1,"timestamp_ns":2,"pid":1,"tgid":1,"entity_id":"{ID}",
        "entity_id_source":"stat","argv":["a"],"argv_hex":["f"],"ancestors":[]}}"#
    );
    assert!(matches!(read(bad_argv.as_bytes()), Err(ReadError::Type { key: "argv_hex", .. })));
}

#[test]
fn tty_names_of_every_kind_read_back() {
    for name in ["pts/0", "pts/2100", "tty1", "ttyS0", "5:1"] {
        let line = format!(
            r#"{{"event":"sid","cpu":0,"seq":1,"timestamp_ns":2,"pid":1,"tgid":1,"entity_id":"{ID}",
            "entity_id_source":"stat","pgid":1,"sid":1,"tty":"{name}"}}"#
        );
        let r = rec(&line);
        assert_eq!(crate::tty::name(r.process.unwrap().tty_nr as u32), name);
    }
}
