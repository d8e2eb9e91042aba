//! Interoperability with Debian's `tshark`: files written here are read without error, with the packets and
//! timestamps written, and `contrib/wireshark/cnlink.lua` shows the decoded fields with the right values.
//!
//! Needs `tshark` (installed by `.ci/run`); the live test also needs root. Without them these tests skip, except
//! under `CI=true`. tshark runs Lua as root here because Debian's `init.lua` sets
//! `run_user_scripts_when_superuser = true`; each test checks the script's fields appear, so a tshark that refused
//! the script would fail them, not pass them.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, EventMask, McastOp, NlMsg, ProcEvent, ProcInput};
use cnlink_capture::{
    ByteOrder, CaptureWriter, Clock, FileHeader, HostInfo, Loss, LossKind, Note, Record, Session, Snapshot,
    SnapshotReason,
};

const LUA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/wireshark/cnlink.lua");

/// Runs tshark with `args`, bounded by a minute; returns stdout, after checking it exited 0 and said nothing
/// alarming on stderr.
fn tshark(args: &[&str]) -> String {
    let mut child = Command::new("tshark")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tshark");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tshark {args:?} ran for more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap().unwrap();
    let stderr = err_t.join().unwrap().unwrap();
    let complaints: Vec<&str> =
        stderr.lines().filter(|l| !l.starts_with("Running as user") && !l.trim().is_empty()).collect();
    assert!(status.success(), "tshark {args:?} failed ({status}): {stderr}");
    assert!(complaints.is_empty(), "tshark {args:?} complained: {stderr}");
    stdout
}

/// Rows of `-T fields` output, tab-separated.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// `-T fields -e F1 -e F2 ...` on `file`, with the dissector when `lua`.
fn fields(file: &Path, lua: bool, names: &[&str]) -> Vec<Vec<String>> {
    let script = format!("lua_script:{LUA}");
    let path = file.to_str().unwrap();
    let mut args = vec!["-n", "-r", path, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"];
    if lua {
        args.splice(0..0, ["-X", script.as_str()]);
    }
    for n in names {
        args.extend(["-e", n]);
    }
    rows(&tshark(&args))
}

fn epoch(ns: u64) -> String {
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

/// The four kernel datagrams with the timestamps they get: their own kernel time plus a fixed offset.
fn fixture_packets() -> Vec<(u64, Vec<u8>)> {
    let offset = 1_700_000_000_000_000_000;
    common::kernel_datagrams()
        .into_iter()
        .map(|(_, d)| (offset + cnlink_capture::proc_event_timestamp(&d).unwrap(), d))
        .collect()
}

fn write_file(dir: &Path, name: &str, order: ByteOrder, packets: &[(u64, Vec<u8>)], records: &[Record]) -> PathBuf {
    let host = HostInfo::collect();
    let mut w = CaptureWriter::with_byte_order(Vec::new(), &FileHeader::netlink(&[11]).with_host(host), order).unwrap();
    for (ts, d) in packets {
        w.write_datagram(*ts, 11, d).unwrap();
    }
    for r in records {
        w.write_record(r).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, w.into_inner().unwrap()).unwrap();
    path
}

fn tshark_or_skip(test: &str) -> bool {
    common::tshark_or_skip(test).is_some()
}

#[test]
fn tshark_reads_files_of_both_byte_orders_with_packets_and_timestamps_as_written() {
    if !tshark_or_skip("tshark_reads_files") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let packets = fixture_packets();
    let records = [Record::Note(Note { timestamp_ns: 1, text: "hello".into() })];
    for (name, order) in [("native.pcapng", ByteOrder::NATIVE), ("big.pcapng", ByteOrder::Big)] {
        let file = write_file(dir.path(), name, order, &packets, &records);
        let got = fields(&file, false, &["frame.time_epoch", "netlink.family", "netlink.hdr_seq", "frame.cb_pen"]);
        let netlink: Vec<_> = got.iter().filter(|r| r[1] == "0x000b").collect();
        assert_eq!(netlink.len(), packets.len(), "{name}: {got:?}");
        for (row, (ts, d)) in netlink.iter().zip(&packets) {
            assert_eq!(row[0], epoch(*ts), "{name}: timestamp as written");
            let seq = NlMsg::new_checked(&d[..]).unwrap().nlmsg_seq();
            assert_eq!(row[2], seq.to_string(), "{name}: the datagram's own bytes");
        }
        // Wireshark lists Custom Blocks as frames too: the host record and the note.
        assert_eq!(got.iter().filter(|r| r[3] == "32473").count(), 2, "{name}: {got:?}");
        assert_eq!(got.len(), packets.len() + 2);
    }
}

/// The fields the dissector shows for a proc event, by name, as `cnlink::wire` decodes it.
fn expected_fields(ev: &ProcEvent) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("cnlink.proc.what_name", ev.data.name().to_string()),
        ("cnlink.proc.cpu", ev.cpu.to_string()),
        ("cnlink.proc.timestamp_ns", ev.timestamp_ns.to_string()),
    ];
    let s = |x: i32| x.to_string();
    match ev.data {
        EventData::Ack { err } => v.push(("cnlink.proc.err", err.to_string())),
        EventData::Fork { parent_pid, parent_tgid, child_pid, child_tgid } => v.extend([
            ("cnlink.proc.parent_pid", s(parent_pid)),
            ("cnlink.proc.parent_tgid", s(parent_tgid)),
            ("cnlink.proc.child_pid", s(child_pid)),
            ("cnlink.proc.child_tgid", s(child_tgid)),
        ]),
        EventData::Exec { process_pid, process_tgid } | EventData::Sid { process_pid, process_tgid } => {
            v.extend([("cnlink.proc.process_pid", s(process_pid)), ("cnlink.proc.process_tgid", s(process_tgid))])
        }
        EventData::Uid { process_pid, ruid, euid, .. } => v.extend([
            ("cnlink.proc.process_pid", s(process_pid)),
            ("cnlink.proc.ruid", ruid.to_string()),
            ("cnlink.proc.euid", euid.to_string()),
        ]),
        EventData::Gid { process_pid, rgid, egid, .. } => v.extend([
            ("cnlink.proc.process_pid", s(process_pid)),
            ("cnlink.proc.rgid", rgid.to_string()),
            ("cnlink.proc.egid", egid.to_string()),
        ]),
        EventData::Ptrace { process_pid, tracer_pid, tracer_tgid, .. } => v.extend([
            ("cnlink.proc.process_pid", s(process_pid)),
            ("cnlink.proc.tracer_pid", s(tracer_pid)),
            ("cnlink.proc.tracer_tgid", s(tracer_tgid)),
        ]),
        EventData::Comm { process_pid, comm, .. } => v.extend([
            ("cnlink.proc.process_pid", s(process_pid)),
            ("cnlink.proc.comm", wire::comm_str(&comm).into_owned()),
        ]),
        EventData::Coredump { process_pid, parent_pid, .. } => {
            v.extend([("cnlink.proc.process_pid", s(process_pid)), ("cnlink.proc.parent_pid", s(parent_pid))])
        }
        EventData::Exit { process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid } => v.extend([
            ("cnlink.proc.process_pid", s(process_pid)),
            ("cnlink.proc.process_tgid", s(process_tgid)),
            ("cnlink.proc.exit_code", exit_code.to_string()),
            ("cnlink.proc.exit_signal", s(exit_signal as i32)),
            ("cnlink.proc.parent_pid", s(parent_pid)),
            ("cnlink.proc.parent_tgid", s(parent_tgid)),
        ]),
        _ => {}
    }
    v
}

/// Checks the dissector's fields for every packet of `file` against `events`, in order (one tshark run).
fn check_proc_fields(file: &Path, events: &[(u32, u32, ProcEvent)]) {
    let expected: Vec<Vec<(&str, String)>> = events
        .iter()
        .map(|(seq, ack, ev)| {
            let mut v = vec![("cnlink.idx", "1".to_string()), ("cnlink.val", "1".into())];
            v.extend([("cnlink.seq", seq.to_string()), ("cnlink.ack", ack.to_string())]);
            v.extend(expected_fields(ev));
            v
        })
        .collect();
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in expected.iter().flatten() {
        if !names.contains(n) {
            names.push(n);
        }
    }
    let got = fields(file, true, &names);
    let connector: Vec<_> = got.iter().filter(|r| !r[0].is_empty()).collect();
    assert_eq!(connector.len(), events.len(), "{got:?}");
    for (i, (row, want)) in connector.iter().zip(&expected).enumerate() {
        for (name, value) in want {
            let col = names.iter().position(|n| n == name).unwrap();
            assert_eq!(&row[col], value, "packet {i} ({}) field {name}", events[i].2.data.name());
        }
    }
}

fn decode(d: &[u8]) -> (u32, u32, ProcEvent) {
    let nl = NlMsg::new_checked(d).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    (cn.seq(), cn.ack(), ProcEvent::parse(cn.data()).unwrap())
}

#[test]
fn lua_dissector_shows_ack_fork_exec_exit_of_the_kernel_fixtures() {
    if !tshark_or_skip("lua_dissector_fixtures") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let packets = fixture_packets();
    let file = write_file(dir.path(), "fixtures.pcapng", ByteOrder::NATIVE, &packets, &[]);
    let events: Vec<_> = packets.iter().map(|(_, d)| decode(d)).collect();
    let kinds: Vec<_> = events.iter().map(|e| e.2.data.name()).collect();
    assert_eq!(kinds, ["ack", "fork", "exec", "exit"]);
    check_proc_fields(&file, &events);

    let verbose = tshark(&["-X", &format!("lua_script:{LUA}"), "-n", "-r", file.to_str().unwrap(), "-V"]);
    for want in [
        "Linux kernel connector, id 1.1 (cn_proc)",
        "id.idx: CN_IDX_PROC (1)",
        "what: PROC_EVENT_NONE (0x00000000)",
        "what: PROC_EVENT_FORK (0x00000001)",
        "what: PROC_EVENT_EXEC (0x00000002)",
        "what: PROC_EVENT_EXIT (0x80000000)",
        "exit_code: 768",
        "Exit status: exited 3",
        "Family: Kernel connector (0x000b)",
    ] {
        assert!(verbose.contains(want), "-V lacks {want:?}:\n{verbose}");
    }
    let summary = tshark(&["-X", &format!("lua_script:{LUA}"), "-n", "-r", file.to_str().unwrap()]);
    let (_, _, fork) = &events[1];
    let EventData::Fork { child_pid, .. } = fork.data else { unreachable!() };
    assert!(summary.contains("CONNECTOR 92 fork parent_tgid="), "{summary}");
    assert!(summary.contains(&format!("child_pid={child_pid}")), "{summary}");
}

#[test]
fn lua_dissector_shows_every_event_kind_and_the_requests() {
    if !tshark_or_skip("lua_dissector_every_kind") {
        return;
    }
    let mut comm = [0u8; 16];
    comm[..7].copy_from_slice(b"worker1");
    let kinds = [
        EventData::Uid { process_pid: 10, process_tgid: 10, ruid: 1000, euid: 0 },
        EventData::Gid { process_pid: 11, process_tgid: 11, rgid: 100, egid: 5 },
        EventData::Sid { process_pid: 12, process_tgid: 12 },
        EventData::Ptrace { process_pid: 13, process_tgid: 13, tracer_pid: 99, tracer_tgid: 98 },
        EventData::Comm { process_pid: 14, process_tgid: 14, comm },
        EventData::Coredump { process_pid: 15, process_tgid: 15, parent_pid: 1, parent_tgid: 1 },
        EventData::Exit {
            process_pid: 16,
            process_tgid: 16,
            exit_code: 0x8b,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
        },
    ];
    let mut packets = Vec::new();
    let mut events = Vec::new();
    for (i, data) in kinds.into_iter().enumerate() {
        let ev = ProcEvent { cpu: i as u32 % 2, timestamp_ns: 1_000 + i as u64, data };
        let mut body = [0u8; 40];
        ev.emit(&mut body).unwrap();
        let hdr = CnMsgHdr { id: CbId::PROC, seq: 500 + i as u32, ack: 0, len: 40, flags: 0 };
        packets.push((1_700_000_000_000_000_000 + i as u64, wire::datagram(hdr, &body, 0).unwrap()));
        events.push((500 + i as u32, 0, ev));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "kinds.pcapng", ByteOrder::NATIVE, &packets, &[]);
    check_proc_fields(&file, &events);
    let got = fields(&file, true, &["cnlink.proc.exit_status"]);
    assert!(got.iter().any(|r| r[0] == "killed by signal 11 (core dumped)"), "{got:?}");

    // The subscription requests a listener sends: the legacy 4-byte op and the 6.6 filtered form.
    let mut requests = Vec::new();
    for (i, input) in [
        ProcInput::Legacy(McastOp::Listen),
        ProcInput::Filtered { op: McastOp::Ignore, events: EventMask::EXIT | EventMask::FORK },
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = [0u8; 8];
        let n = input.emit(&mut body).unwrap();
        let hdr = CnMsgHdr { id: CbId::PROC, seq: i as u32, ack: 77, len: n as u16, flags: 0 };
        requests.push((1_700_000_000_000_000_000, wire::datagram(hdr, &body[..n], 4321).unwrap()));
    }
    let file = write_file(dir.path(), "requests.pcapng", ByteOrder::NATIVE, &requests, &[]);
    let got = fields(&file, true, &["cnlink.proc.mcast_op", "cnlink.proc.event_type", "cnlink.ack", "cnlink.len"]);
    let got: Vec<_> = got.into_iter().filter(|r| !r[0].is_empty()).collect();
    assert_eq!(got, [["1", "", "77", "4"], ["2", "0x80000001", "77", "8"]]);
}

#[test]
fn lua_dissector_shows_cnlink_records() {
    if !tshark_or_skip("lua_dissector_records") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let records = [
        Record::Snapshot(Snapshot { reason: SnapshotReason::Start, encoding: 3, timestamp_ns: 5, data: vec![1; 10] }),
        Record::Loss(Loss {
            kind: LossKind::SeqGap,
            count: Some(42),
            lower_bound: true,
            cpu: Some(1),
            timestamp_ns: 6,
            before: Some((1, 1234)),
        }),
        Record::Loss(Loss {
            kind: LossKind::Overrun,
            count: None,
            lower_bound: false,
            cpu: None,
            timestamp_ns: 7,
            before: None,
        }),
        Record::Note(Note { timestamp_ns: 8, text: "fork storm at 12:00".into() }),
        Record::Session(Session { encoding: 1, timestamp_ns: 9, data: br#"{"command":"record"}"#.to_vec() }),
        Record::Clock(Clock { from_monotonic_ns: 10, realtime_minus_monotonic_ns: -11, utc_offset_s: 3600 }),
    ];
    let file = write_file(dir.path(), "records.pcapng", ByteOrder::NATIVE, &fixture_packets()[..1], &records);
    let got = fields(
        &file,
        true,
        &[
            "cnlink_record.kind",
            "cnlink_record.host.kernel_release",
            "cnlink_record.snapshot.reason",
            "cnlink_record.loss.kind",
            "cnlink_record.loss.count",
            "cnlink_record.loss.cpu",
            "cnlink_record.loss.before_seq",
            "cnlink_record.note.text",
            "cnlink_record.session.text",
            "cnlink_record.clock.from_monotonic_ns",
            "cnlink_record.clock.realtime_minus_monotonic_ns",
            "cnlink_record.clock.utc_offset_s",
        ],
    );
    let release = HostInfo::collect().kernel_release;
    let got: Vec<_> = got.into_iter().filter(|r| !r[0].is_empty()).collect();
    assert_eq!(
        got,
        [
            vec!["1", &release, "", "", "", "", "", "", "", "", "", ""],
            vec!["2", "", "1", "", "", "", "", "", "", "", "", ""],
            vec!["3", "", "", "1", "42", "1", "1234", "", "", "", "", ""],
            vec!["3", "", "", "2", "", "", "", "", "", "", "", ""],
            vec!["5", "", "", "", "", "", "", "fork storm at 12:00", "", "", "", ""],
            vec!["6", "", "", "", "", "", "", "", r#"{"command":"record"}"#, "", "", ""],
            vec!["7", "", "", "", "", "", "", "", "", "10", "-11", "3600"],
        ]
    );
    let summary = tshark(&["-X", &format!("lua_script:{LUA}"), "-n", "-r", file.to_str().unwrap()]);
    assert!(summary.contains("cnlink loss: seq gap, count >= 42"), "{summary}");
}

/// A short live capture: datagrams of the proc connector received on a raw socket while `ProcEvents` holds the
/// subscription, written with the kernel's timestamps turned into wall clock, then read back by tshark.
#[test]
fn live_capture_of_a_child_reads_back_in_tshark() {
    use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
    use cnlink::socket::{Protocol, Socket};

    if !tshark_or_skip("live_capture") {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        common::skip("live_capture", "needs root for the proc connector");
        return;
    }
    let raw = Socket::open(Protocol::Connector).unwrap();
    raw.set_recv_buffer(8 << 20).unwrap();
    raw.add_membership(wire::CN_IDX_PROC).unwrap();
    let mut events = ProcEvents::subscribe(ProcOptions::default()).expect("subscribe (needs the initial namespaces)");
    let host = HostInfo::collect();
    let offset = host.monotonic_to_realtime_ns();

    let child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let pid = child.id() as i32;
    let mut child = child;
    child.wait().unwrap();

    // The child's fork, exec and exit as the raw socket received them, byte for byte.
    let mine = |d: &[u8]| -> Option<&'static str> {
        let (_, _, ev) = decode(d);
        match ev.data {
            EventData::Fork { child_pid, .. } if child_pid == pid => Some("fork"),
            EventData::Exec { process_pid, .. } if process_pid == pid => Some("exec"),
            EventData::Exit { process_pid, .. } if process_pid == pid => Some("exit"),
            _ => None,
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut captured: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 4096];
    raw.set_recv_timeout(Some(Duration::from_millis(200))).unwrap();
    while captured.iter().filter_map(|d| mine(d)).count() < 3 {
        assert!(Instant::now() < deadline, "the child's events never arrived; got {}", captured.len());
        match raw.recv(&mut buf) {
            Ok(meta) if meta.from.port == 0 => {
                let d = buf[..meta.len].to_vec();
                if NlMsg::new_checked(&d[..]).is_ok() && decode_ok(&d) {
                    captured.push(d);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("raw receive: {e}"),
        }
    }
    // The same events through the library's subscription, re-emitted, are the bytes the kernel sent.
    let mut seen = Vec::new();
    let mut items = Vec::new();
    while seen.len() < 3 {
        assert!(Instant::now() < deadline, "ProcEvents never showed the child's events");
        items.clear();
        events.recv_items(&mut items, Some(Duration::from_millis(200))).unwrap();
        for it in &items {
            if let ProcItem::Event(e) = it {
                let mut body = [0u8; 40];
                ProcEvent { cpu: e.cpu, timestamp_ns: e.timestamp_ns, data: e.data }.emit(&mut body).unwrap();
                let hdr = CnMsgHdr { id: CbId::PROC, seq: e.seq, ack: 0, len: 40, flags: 0 };
                let d = wire::datagram(hdr, &body, 0).unwrap();
                if mine(&d).is_some() {
                    seen.push(d);
                }
            }
        }
    }
    let ours: Vec<Vec<u8>> = captured.iter().filter(|d| mine(d).is_some()).cloned().collect();
    assert_eq!(ours, seen, "raw datagrams equal what ProcEvents decoded");

    let packets: Vec<(u64, Vec<u8>)> = captured
        .iter()
        .map(|d| {
            let ts = cnlink_capture::proc_event_timestamp(d).unwrap();
            (cnlink_capture::monotonic_to_wall(ts, offset), d.clone())
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "live.pcapng", ByteOrder::NATIVE, &packets, &[]);

    let got = fields(
        &file,
        true,
        &[
            "frame.time_epoch",
            "netlink.family",
            "cnlink.proc.what_name",
            "cnlink.proc.child_pid",
            "cnlink.proc.process_pid",
            "cnlink.proc.exit_code",
        ],
    );
    let netlink: Vec<_> = got.iter().filter(|r| r[1] == "0x000b").collect();
    assert_eq!(netlink.len(), packets.len(), "every datagram written is a packet");
    for (row, (ts, _)) in netlink.iter().zip(&packets) {
        assert_eq!(row[0], epoch(*ts));
    }
    let wall_now = HostInfo::collect().realtime_ns as u64;
    assert!(packets.iter().all(|(ts, _)| ts.abs_diff(wall_now) < 60_000_000_000), "wall-clock timestamps");
    let p = pid.to_string();
    let fork = netlink.iter().find(|r| r[2] == "fork" && r[3] == p).expect("the child's fork");
    assert_eq!(fork[3], p);
    assert!(netlink.iter().any(|r| r[2] == "exec" && r[4] == p), "the child's exec: {got:?}");
    assert!(netlink.iter().any(|r| r[2] == "exit" && r[4] == p && r[5] == "768"), "the child's exit: {got:?}");
}

/// A proc connector datagram this test can decode (other groups' traffic never reaches the socket).
fn decode_ok(d: &[u8]) -> bool {
    NlMsg::new_checked(d)
        .ok()
        .and_then(|nl| CnMsg::new_checked(nl.payload()).ok().map(|cn| ProcEvent::parse(cn.data()).is_ok()))
        .unwrap_or(false)
}

#[test]
fn tshark_reads_every_rotated_file() {
    use cnlink_capture::{RotateConfig, RotateLimit, RotatingWriter};
    if !tshark_or_skip("tshark_reads_every_rotated_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = RotateConfig {
        limit: Some(RotateLimit::Size(1024)),
        max_files: Some(3),
        ..RotateConfig::single(dir.path().join("rot.pcapng"))
    };
    let snapshot = Record::Snapshot(Snapshot {
        reason: SnapshotReason::Rotation,
        encoding: 1,
        timestamp_ns: 1,
        data: vec![7; 32],
    });
    let header = FileHeader::netlink(&[11]).with_host(HostInfo::collect());
    let t0 = Instant::now();
    let mut w = RotatingWriter::create(config, header, t0).unwrap();
    let packets = fixture_packets();
    let mut written = Vec::new();
    for round in 0..8u64 {
        for (ts, d) in &packets {
            if w.rotation_due(t0, 64 + d.len() as u64) {
                w.rotate(t0, std::slice::from_ref(&snapshot)).unwrap();
            }
            w.write_datagram(t0, ts + round, 11, d).unwrap();
            written.push(ts + round);
        }
    }
    let files = w.finish().unwrap();
    assert_eq!(files.len(), 3);
    let mut read = Vec::new();
    for f in &files {
        let got = fields(f, true, &["frame.time_epoch", "netlink.family", "cnlink_record.kind"]);
        assert_eq!(got[0][2], "1", "{}: the host record first", f.display());
        assert_eq!(got[1][2], "2", "{}: then the rotation snapshot", f.display());
        read.extend(got.iter().filter(|r| r[1] == "0x000b").map(|r| r[0].clone()));
    }
    let tail: Vec<String> = written[written.len() - read.len()..].iter().map(|&t| epoch(t)).collect();
    assert_eq!(read, tail, "the kept files hold the last packets, in order");
}
