//! The examples run and do what they say (cargo builds them before the tests).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example's binary. `cargo test` builds the examples beside the test binaries; when they are not there (one
/// test target was asked for), the example is built into this test's own scratch target directory, so that the
/// outer cargo's build-directory lock is never waited on and the outer build's features are not changed.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    if built.exists() {
        return built;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", "cnlink", "--example", name])
        .env("CARGO_TARGET_DIR", &dir)
        .status()
        .unwrap();
    assert!(status.success(), "could not build the {name} example");
    dir.join("debug/examples").join(name)
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
