//! Helpers shared by the live-kernel tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cnlink::proc::{Event, ProcEvents, ProcItem};

/// True when the test may talk to the kernel's proc connector; otherwise prints why it is skipped
/// (and panics under `CI=true`, where a skip is a failure).
pub(crate) fn live_kernel() -> bool {
    let reason = if !rustix::process::geteuid().is_root() {
        Some("needs root (the privileged paths and the old-kernel paths are tested as root)")
    } else if !std::fs::read_to_string("/proc/net/connector").is_ok_and(|s| s.contains(" 1:1")) {
        Some("needs the initial network namespace and CONFIG_PROC_EVENTS (no cn_proc in /proc/net/connector)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("live-kernel test cannot run under CI: {r}")
        }
        Some(r) => {
            eprintln!("skipped: {r}");
            false
        }
    }
}

/// Whether the running kernel is at least `major.minor`.
pub(crate) fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    cnlink::engine::KernelRelease::parse(&release).unwrap() >= cnlink::engine::KernelRelease { major, minor }
}

/// Collects events until `done` says so or `timeout` passes; returns them all.
pub(crate) fn collect_until(
    events: &mut ProcEvents,
    timeout: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut items = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; saw {} events", got.len());
        items.clear();
        events.recv_items(&mut items, Some(left)).unwrap();
        got.extend(items.iter().filter_map(|i| if let ProcItem::Event(e) = i { Some(*e) } else { None }));
    }
    got
}
