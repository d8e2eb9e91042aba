//! Who can use the proc connector, and the typed errors that say why nothing can arrive.
//!
//! Each test re-runs this test binary (one named test, with `CNLINK_CHILD` set) as another user or inside new
//! namespaces, and checks what the child saw.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use cnlink::proc::{ProcEvents, ProcOptions};
use cnlink::Error;

/// The child side: subscribe and report the outcome on stdout. The tests below run it (`--ignored`) as another
/// user or in other namespaces; run by hand (`--include-ignored`) it subscribes as this process and must succeed.
#[test]
#[ignore = "the child of the tests below, which run it with --ignored"]
fn child_subscribe() {
    if std::env::var_os("CNLINK_CHILD").is_none() {
        if common::live_kernel() {
            assert_eq!(subscribe_outcome(), "ok");
        }
        return;
    }
    println!("RESULT {}", subscribe_outcome());
}

/// Subscribes, sees a child of its own exit, and says how that went.
fn subscribe_outcome() -> String {
    let opts = ProcOptions { ack_timeout: Duration::from_millis(300), ..Default::default() };
    match ProcEvents::subscribe(opts) {
        Ok(mut events) => {
            let mut child = Command::new("/bin/true").spawn().unwrap();
            let pid = child.id() as i32;
            child.wait().unwrap();
            common::collect_until(&mut events, Duration::from_secs(10), |ev| {
                ev.iter()
                    .any(|e| matches!(e.data, cnlink::wire::EventData::Exit { process_pid, .. } if process_pid == pid))
            });
            "ok".into()
        }
        Err(Error::ForeignNamespace(ns)) => format!("foreign {ns}"),
        Err(Error::NoAck { likely, .. }) => format!("noack {likely}"),
        Err(Error::PermissionDenied(why)) => format!("permission {why}"),
        Err(e) => format!("other {e}"),
    }
}

fn run_child(mut cmd: Command) -> String {
    let out = cmd
        .args(["--exact", "child_subscribe", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CNLINK_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("RESULT ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .unwrap_or_else(|| panic!("no result: {text} {}", String::from_utf8_lossy(&out.stderr)))
        .to_owned()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap(), it.next().unwrap()) >= (major, minor)
}

#[test]
fn unprivileged_user_subscribes_on_6_6() {
    if !common::live_kernel() {
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.uid(65534).gid(65534);
    let result = run_child(cmd);
    if kernel_at_least(6, 6) {
        assert_eq!(result, "ok", "Linux 6.6+ lets any user in the initial namespaces listen");
    } else {
        assert!(result.starts_with("permission"), "{result}");
    }
}

#[test]
fn foreign_network_namespace_is_named() {
    if !common::live_kernel() {
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.arg("--net").arg(std::env::current_exe().unwrap());
    assert_eq!(run_child(cmd), "foreign network");
}

#[test]
fn foreign_user_namespace_gets_no_ack_with_its_cause() {
    if !common::live_kernel() {
        return;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user"]).arg(std::env::current_exe().unwrap());
    let result = run_child(cmd);
    // Joining the group may be refused in the new user namespace on some kernels; otherwise the request is
    // ignored and the missing ack is blamed on the namespace.
    assert!(result.contains("user namespace") || result.starts_with("permission"), "{result}");
}
