//! The examples run and do what they say (cargo builds them before the tests).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example's binary; `cargo test` builds examples, `cargo test --test examples_run` alone does not.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo).args(["build", "-p", "cnlink", "--example", name]).status().unwrap();
        assert!(ok.success());
    }
    path
}

#[test]
fn proc_listen_prints_events_until_its_count() {
    if !common::live_kernel() {
        return;
    }
    let listener = Command::new(example("proc_listen")).arg("3").stdout(Stdio::piped()).spawn().unwrap();
    // Make sure there is something to see.
    let spawner = std::thread::spawn(|| {
        for _ in 0..50 {
            let _ = Command::new("/bin/true").status();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    });
    let out = listener.wait_with_output().unwrap();
    spawner.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains(" cpu=") && l.contains(" timestamp_ns=")).count(), 3, "{text}");
}

#[test]
fn request_reply_gets_the_kernel_ack() {
    if !common::live_kernel() {
        return;
    }
    let out = Command::new(example("request_reply")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cn_msg id=1.1 (cn_proc)") && text.contains("ack cpu=") && text.contains("err=0"), "{text}");
}
