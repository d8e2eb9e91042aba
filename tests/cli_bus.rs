//! `cnlink bus`: the daemon (with `--port`, `--echo`, `--policy`, SIGTERM), and `list`, `stats`, `echo` and
//! `test` against it, as a user runs them.

mod cli_common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use cli_common::{cnlink, json, Running};
use cnlink::wire::CbId;
use cnlink::ClientItem;
use cnlink_bus::wire::ListEntry;
use cnlink_bus::BusClient;

const T: Duration = Duration::from_secs(5);

/// A port id of our own, so parallel tests and a real daemon on the default port never collide.
fn port(salt: u32) -> u32 {
    0x6300_0000 | ((std::process::id() & 0xfff) << 8) | salt
}

/// `cnlink bus` with `args`, once it answers.
fn daemon(port: u32, args: &[&str]) -> Running {
    let p = port.to_string();
    let mut all = vec!["bus", "--port", &p];
    all.extend_from_slice(args);
    let d = Running::start(&all);
    let mut c = BusClient::connect(port).unwrap();
    c.wait_for_bus(T).expect("the daemon answers");
    d
}

/// Polls the bus's LIST every 20 ms until `want` holds for it, for up to `timeout`.
fn listed_within(c: &mut BusClient, timeout: Duration, want: impl Fn(&[ListEntry]) -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if c.list().is_ok_and(|l| want(&l)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn terminate(d: &Running) {
    let pid = rustix::process::Pid::from_child(&d.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
}

#[test]
fn daemon_with_an_echo_callback_lists_counts_and_stops_on_sigterm() {
    let port = port(1);
    let d = daemon(port, &["--echo", "7.1", "--echo", "0x10.0x20"]);
    let mut c = BusClient::connect(port).unwrap();
    for i in 0..3u8 {
        assert_eq!(c.request(CbId::new(7, 1), &[i; 5], T).unwrap().data, vec![i; 5]);
    }
    let p = port.to_string();

    let out = cnlink().args(["bus", "list", "--port", &p]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Name            ID");
    assert!(lines.contains(&"connector       4294967295:4294967295"), "{text}");
    assert!(lines.contains(&"cn_echo         7:1"), "{text}");
    assert!(lines.contains(&"cn_echo         16:32"), "{text}");

    let out = cnlink().args(["bus", "list", "--port", &p, "--format", "json"]).output().unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().filter_map(json).collect();
    let echo = rows.iter().find(|v| v["idx"] == 7).expect("7.1 listed");
    assert_eq!((echo["val"].as_u64(), echo["group"].as_u64(), echo["port"].as_u64()), (Some(1), Some(7), Some(0)));

    let out = cnlink().args(["bus", "stats", "--port", &p]).output().unwrap();
    let stats = String::from_utf8(out.stdout).unwrap();
    let get = |name: &str| {
        stats.lines().find_map(|l| l.strip_prefix(name).filter(|r| r.starts_with(' ')).map(|r| r.trim().to_string()))
    };
    assert_eq!(get("delivered_local").as_deref(), Some("3"), "{stats}");
    assert_eq!(get("ids").as_deref(), Some("3"), "{stats}");

    terminate(&d);
    let (code, err, _) = d.finish(T);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("cnlink bus: stopped;"), "{err}");
}

#[test]
fn echo_agent_and_the_cn_test_scenario() {
    let port = port(2);
    let d = daemon(port, &[]);
    let p = port.to_string();
    // `cnlink bus echo` registers and answers with seq kept, ack + 1 and the payload.
    let mut echo = cnlink().args(["bus", "echo", "30.5", "31.6", "--port", &p]).spawn().unwrap();
    let mut c = BusClient::connect(port).unwrap();
    assert!(
        listed_within(&mut c, T, |l| l.iter().filter(|e| e.name == "cn_echo" && e.port != 0).count() == 2),
        "cnlink bus echo registered both ids"
    );
    for id in [CbId::new(30, 5), CbId::new(31, 6)] {
        let (seq, ack) = c.send(id, b"ping").unwrap();
        let r = c.recv(Some(T)).unwrap().and_then(ClientItem::into_message).expect("an answer");
        assert_eq!((r.hdr.id, r.hdr.seq, r.hdr.ack, &r.data[..]), (id, seq, ack.wrapping_add(1), &b"ping"[..]));
    }
    // SIGINT: it unregisters its ids and says how many it answered.
    let pid = rustix::process::Pid::from_child(&echo);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    assert!(echo.wait().unwrap().success());
    assert!(!c.list().unwrap().iter().any(|e| e.name == "cn_echo"), "ids unregistered on exit");

    // The cn_test/ucon-style scenario passes against the running daemon, step by step.
    let out = cnlink().args(["bus", "test", "--port", &p, "--count", "20"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "ok   registered 14.1110 (group 14)",
        "ok   notification: added (ack 0)",
        "ok   20/20 replies with the same seq, ack + 1 and payload",
        "ok   group 14 subscriber got the owner's message (group 0 lookup)",
        "ok   notification: removed (ack 1)",
        "result: PASS",
    ] {
        assert!(text.lines().any(|l| l.starts_with(want)), "missing {want:?} in:\n{text}");
    }
    terminate(&d);
    assert_eq!(d.finish(T).0, Some(0));
}

#[test]
fn policy_file_denies_and_errors_exit_2() {
    let port = port(3);
    let p = port.to_string();
    // No daemon on this port: a clear message and exit 2.
    let out = cnlink().args(["bus", "list", "--port", &p]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bus answers on port"), "{out:?}");
    // A policy that does not parse: exit 2 naming the problem.
    let dir = std::env::temp_dir().join(format!("cnlink-cli-bus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[register]]\nuids = \"everyone\"\n").unwrap();
    let out = cnlink().args(["bus", "--port", &p, "--policy"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A policy that lets only uid 4242 register idx 50..=59.
    let good = dir.join("policy.toml");
    std::fs::write(&good, "[[register]]\nuids = [4242]\nidx = [50, 59]\n").unwrap();
    let d = daemon(port, &["--policy", good.to_str().unwrap()]);
    let echo_as = |uid: u32, id: &str| {
        let mut cmd = cnlink();
        cmd.args(["bus", "echo", id, "--port", &p]);
        if rustix::process::geteuid().is_root() {
            cmd.uid(uid).gid(uid);
        }
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    // Refused: exits 2 with the errno the bus answered.
    let out = echo_as(4243, "50.1").wait_with_output().unwrap();
    if rustix::process::geteuid().is_root() {
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
        // Allowed: uid 4242 registers 50.1.
        let mut ok = echo_as(4242, "50.1");
        let mut c = BusClient::connect(port).unwrap();
        assert!(
            listed_within(&mut c, T, |l| l.iter().any(|e| e.id == CbId::new(50, 1) && e.uid == 4242)),
            "uid 4242 registered 50.1"
        );
        let _ = ok.kill();
        let _ = ok.wait();
    }
    terminate(&d);
    let (code, err, _) = d.finish(T);
    assert_eq!(code, Some(0));
    if rustix::process::geteuid().is_root() {
        assert!(err.contains("denied"), "the denial is logged: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cnlink bus` run as uid 65534 on `port`: a real daemon of the wrong user, which is what an impostor looks like.
fn impostor(port: u32) -> std::process::Child {
    let child = cnlink()
        .args(["bus", "--port", &port.to_string()])
        .uid(65534)
        .gid(65534)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut c = BusClient::connect(port).unwrap();
    c.set_bus_uids(&[65534]);
    c.wait_for_bus(T).expect("the impostor answers");
    child
}

#[test]
fn an_impostor_on_the_bus_port_is_refused_by_name() {
    if !cli_common::root_or_skip("an_impostor_on_the_bus_port_is_refused_by_name") {
        return;
    }
    let port = port(4);
    let p = port.to_string();
    let mut imp = impostor(port);
    // Root's echo agent finds uid 65534 on the bus's port: it refuses, names it, registers nothing.
    let out = cnlink().args(["bus", "echo", "30.7", "--port", &p]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("uid 65534 (pid {})", imp.id())), "{err}");
    assert!(!err.contains("answering"), "it never reports a registration: {err}");
    for tool in [&["list"][..], &["stats"]] {
        let out = cnlink().args(["bus"]).args(tool).args(["--port", &p]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{tool:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("uid 65534"), "{out:?}");
    }
    // Trusting that uid explicitly, the same tools talk to it; and nothing was registered with it.
    let out = cnlink().args(["bus", "list", "--port", &p, "--bus-uid", "65534", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().filter_map(json).collect();
    assert_eq!(rows.len(), 1, "only the bus's own id: {rows:?}");
    let _ = imp.kill();
    let _ = imp.wait();
}

#[test]
fn bus_list_escapes_what_agents_chose() {
    let port = port(5);
    let d = daemon(port, &[]);
    let mut agent = BusClient::connect(port).unwrap();
    agent.register(CbId::new(60, 1), "ev\x1b[2J\r\x07\x7f\u{9b}il").unwrap();
    for args in [&["bus", "list"][..], &["bus", "list", "--long"]] {
        let out = cnlink().args(args).args(["--port", &port.to_string()]).output().unwrap();
        assert!(out.status.success());
        assert!(!out.stdout.iter().any(|&b| b.is_ascii_control() && b != b'\n' || b >= 0x80), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(r"ev\x1b[2J\x0d\x07\x7f\x9bil"), "{text}");
    }
    // JSON is escaped as JSON, unchanged.
    let out = cnlink().args(["bus", "list", "--format", "json", "--port", &port.to_string()]).output().unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().filter_map(json).collect();
    assert!(rows.iter().any(|v| v["name"] == "ev\x1b[2J\r\x07\x7f\u{9b}il"), "{rows:?}");
    terminate(&d);
    assert_eq!(d.finish(T).0, Some(0));
}
