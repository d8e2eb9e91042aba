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
