//! `cnlink decode`, `list`, `send` and `listen` through the binary.

mod cli_common;

use std::process::Command;
use std::time::Duration;

use cli_common::{cnlink, json, root_or_skip, Running};

/// The subscription ack captured from this machine's kernel (crates/cnlink/src/wire/fixtures.rs `ACK`).
const ACK_HEX: &str = "4c000000 03000000 a4670300 00000000 01000000 01000000 a4670300 45332211 28000000 \
                       00000000 01000000 02405c41 80020000 00000000 00000000 00000000 00000000 00000000 00000000";

#[test]
fn decode_prints_the_captured_ack() {
    let out = cnlink().args(["decode", ACK_HEX]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nlmsghdr len=76 type=DONE(3)"), "{text}");
    assert!(text.contains("cn_msg id=1.1 (cn_proc) seq=223140 ack=287454021 len=40"), "{text}");
    assert!(text.contains("ack cpu=1"), "{text}");
    assert!(text.contains("err=0"), "{text}");
}

#[test]
fn decode_reads_files_and_stdin() {
    let bytes: Vec<u8> = ACK_HEX
        .split_whitespace()
        .flat_map(|w| (0..w.len()).step_by(2).map(move |i| u8::from_str_radix(&w[i..i + 2], 16).unwrap()))
        .collect();
    let path = std::env::temp_dir().join(format!("cnlink-ack-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let out = cnlink().args(["decode", "--file"]).arg(&path).output().unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(cn_proc)"));

    let mut child = cnlink()
        .args(["decode", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), ACK_HEX.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("err=0"));
}

#[test]
fn decode_of_bad_input() {
    // Well-formed hex, not a datagram: printed as malformed, exit 1.
    let out = cnlink().args(["decode", "0102"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("malformed"));
    // Not hex at all, or nothing: errors.
    assert_eq!(cnlink().args(["decode", "zz"]).output().unwrap().status.code(), Some(2));
    assert_eq!(cnlink().args(["decode"]).output().unwrap().status.code(), Some(2));
}

#[test]
fn list_shows_the_proc_connector() {
    if !std::path::Path::new("/proc/net/connector").exists() {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "no /proc/net/connector under CI");
        let out = cnlink().arg("list").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "an absent file is an error with a reason");
        eprintln!("list_shows_the_proc_connector: skipped: no /proc/net/connector here");
        return;
    }
    let out = cnlink().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.lines().any(|l| l.starts_with("cn_proc") && l.contains("1:1")), "{text}");

    let out = cnlink().args(["list", "--format", "json"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let proc = text.lines().filter_map(json).find(|v| v["name"] == "cn_proc").expect("cn_proc in JSON");
    assert_eq!((proc["idx"].as_u64(), proc["val"].as_u64()), (Some(1), Some(1)));
    assert_eq!(proc["known_as"], "cn_proc");
}

#[test]
fn send_argument_errors_exit_2() {
    for args in [&["send", "1"][..], &["send", "1.1", "--hex", "abc"], &["send", "1.1", "--data", "x", "--hex", "00"]] {
        let out = cnlink().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn send_a_proc_subscription_and_get_its_ack() {
    if !root_or_skip("send_a_proc_subscription_and_get_its_ack") {
        return;
    }
    // PROC_CN_MCAST_LISTEN; the ack is multicast to group 1 with ack = ours + 1.
    let out = cnlink()
        .args(["send", "1.1", "--hex", "01000000", "--wait-reply", "--rule", "ack-plus-one", "--join", "1"])
        .args(["--timeout", "5s", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v = json(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON object");
    assert_eq!(v["event"], "ack");
    assert_eq!(v["err"], 0);
}

#[test]
fn listen_on_group_1_sees_proc_events() {
    if !root_or_skip("listen_on_group_1_sees_proc_events") {
        return;
    }
    let mon = Running::start(&["listen", "--group", "1", "--format", "json", "-D", "60"]);
    let mut seen = None;
    for _ in 0..40 {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id() as i64;
        c.wait().unwrap();
        seen = mon.wait_for(Duration::from_millis(500), |l| {
            json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(pid))
        });
        if seen.is_some() {
            break;
        }
    }
    assert!(seen.is_some(), "listen --group 1 showed no proc event");
    mon.interrupt();
    let (code, err, _) = mon.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
}

#[test]
fn listen_needs_a_group() {
    assert_eq!(cnlink().arg("listen").output().unwrap().status.code(), Some(2));
}

/// True when `bytes` hold no control character but newlines, and nothing outside ASCII: safe for a terminal.
fn terminal_safe(bytes: &[u8]) -> bool {
    !bytes.iter().any(|&b| b.is_ascii_control() && b != b'\n' || b >= 0x80)
}

/// A process name with ESC, BEL, CR, DEL and a raw C1 CSI byte: an OSC sequence that would retitle a terminal.
const HOSTILE: &[u8] = b"\x1b]0;x\x07\r\x7f\x9b";
/// How the text output must show it.
const HOSTILE_SHOWN: &str = r#"comm="\x1b]0;x\x07\x0d\x7f\x9b""#;

#[test]
fn decode_escapes_what_a_sender_controls() {
    use cnlink::wire::{CbId, CnMsgHdr, EventData, ProcEvent};
    let mut comm = [0u8; 16];
    comm[..HOSTILE.len()].copy_from_slice(HOSTILE);
    let mut ev = [0u8; 40];
    ProcEvent { cpu: 0, timestamp_ns: 1, data: EventData::Comm { process_pid: 7, process_tgid: 7, comm } }
        .emit(&mut ev)
        .unwrap();
    let d = cnlink::wire::datagram(CnMsgHdr { id: CbId::PROC, ..Default::default() }, &ev, 0).unwrap();
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    let out = cnlink().args(["decode", &hex]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(terminal_safe(&out.stdout), "{:?}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(HOSTILE_SHOWN), "{out:?}");
}

/// Spawns marker children until the text listener shows one's exit: proof that it receives proc events.
fn wait_ready_text(mon: &Running) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        if mon
            .wait_for(Duration::from_millis(500), |l| l.contains("exit ") && l.contains(&format!("process_pid={pid} ")))
            .is_some()
        {
            return;
        }
    }
    panic!("listen showed no marker child's exit");
}

#[test]
fn listen_text_escapes_a_hostile_process_name() {
    if !root_or_skip("listen_text_escapes_a_hostile_process_name") {
        return;
    }
    let mon = Running::start(&["listen", "--group", "1", "-D", "60"]);
    wait_ready_text(&mon);
    // The shell renames itself (its own /proc/self/comm): the kernel reports a comm event with these bytes.
    let mut child =
        Command::new("/bin/sh").args(["-c", r"printf '\033]0;x\007\r\177\233' > /proc/self/comm"]).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let line =
        mon.wait_for(Duration::from_secs(10), |l| l.contains("comm ") && l.contains(&format!("process_pid={pid} ")));
    let line = line.expect("the comm event of the renamed shell");
    assert!(line.contains(HOSTILE_SHOWN), "{line:?}");
    assert!(terminal_safe(line.as_bytes()), "{line:?}");
    mon.interrupt();
    assert_eq!(mon.finish(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn listen_prints_a_bundle_once_with_its_real_header() {
    if !root_or_skip("listen_prints_a_bundle_once_with_its_real_header") {
        return;
    }
    use cnlink::socket::{NlAddr, Protocol, Socket};
    use cnlink::wire::{CbId, CnMsgHdr, NlMsgHdr};
    // Connector group 20: no kernel user. A root process may multicast there; listen trusts anyone.
    let mon = Running::start(&["listen", "--group", "20", "-D", "60"]);
    let sock = Socket::open(Protocol::Connector).unwrap();
    let bundle = |seq: u32| {
        // One netlink message of type 0x1234 with flags 5, carrying two cn_msgs back to back (spec §4.6).
        let mut payload = Vec::new();
        for (n, data) in [(1u32, &b"one"[..]), (2, &b"two!"[..])] {
            let m = cnlink::wire::datagram(CnMsgHdr { id: CbId::new(20, 1), seq: n, ..Default::default() }, data, 0);
            payload.extend_from_slice(&m.unwrap()[16..16 + 20 + data.len()]);
        }
        let mut d = vec![0u8; 16];
        NlMsgHdr { len: (16 + payload.len()) as u32, ty: 0x1234, flags: 5, seq, pid: 0 }.emit(&mut d).unwrap();
        d.extend_from_slice(&payload);
        d
    };
    let mut seen = None;
    for seq in 1000..1100 {
        sock.send_to(&bundle(seq), NlAddr { port: 0, groups: 1 << 19 }).unwrap();
        let header = format!("nlmsghdr len=63 type=(4660) flags=0x5 seq={seq} pid=0");
        if mon.wait_for(Duration::from_millis(200), |l| l.starts_with(&header)).is_some() {
            seen = Some(seq);
            break;
        }
    }
    assert!(seen.is_some(), "listen showed none of the bundles");
    // What follows the header: the two cn_msgs with their data, and no second header (no re-framing).
    let mut after = Vec::new();
    mon.wait_for(Duration::from_secs(1), |l| {
        after.push(l.to_string());
        false
    });
    let cn: Vec<&String> = after.iter().filter(|l| l.contains("cn_msg id=20.1")).collect();
    assert_eq!(cn.len(), 2, "{after:#?}");
    assert!(cn[0].contains("seq=1 ") && cn[1].contains("seq=2 "), "{after:#?}");
    assert!(!after.iter().any(|l| l.starts_with("nlmsghdr")), "printed once: {after:#?}");
    mon.interrupt();
    assert_eq!(mon.finish(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn listen_stays_up_through_a_thread_storm_and_counts_overruns() {
    if !root_or_skip("listen_stays_up_through_a_thread_storm_and_counts_overruns") {
        return;
    }
    // A tiny receive buffer (the kernel grants twice this) and a storm of thread creations overrun it.
    let mon = Running::start(&["listen", "--group", "1", "--format", "json", "--rcvbuf", "4K", "-D", "12"]);
    mon.wait_ready_json();
    let mut overrun = None;
    for _ in 0..50 {
        for _ in 0..300 {
            std::thread::spawn(|| {}).join().unwrap();
        }
        overrun = mon.wait_for(Duration::from_millis(200), |l| json(l).is_some_and(|v| v["event"] == "overrun"));
        if overrun.is_some() {
            break;
        }
    }
    let overrun = json(&overrun.expect("an overrun line during the storm")).unwrap();
    assert!(overrun["overruns"].as_u64() >= Some(1), "{overrun}");
    // It goes on listening: a child started after the storm is seen.
    let mut seen = None;
    for _ in 0..20 {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id() as i64;
        c.wait().unwrap();
        seen = mon.wait_for(Duration::from_millis(500), |l| {
            json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(pid))
        });
        if seen.is_some() {
            break;
        }
    }
    assert!(seen.is_some(), "no event after the overrun");
    // At the end of -D: exit 0 and a final count that includes the overruns.
    let (code, err, _) = mon.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "stderr: {err}");
    let last = err.lines().find(|l| l.starts_with("cnlink listen:")).unwrap_or_else(|| panic!("no final count: {err}"));
    let overruns: u64 = last.split(", ").find_map(|f| f.strip_suffix(" overruns")?.parse().ok()).unwrap();
    assert!(overruns >= 1, "{last}");
    assert!(last.contains("receive buffer 8192 bytes"), "what the kernel granted: {last}");
}
