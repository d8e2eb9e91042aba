//! The bus benchmark: child processes playing the bus's parties, the latency scenarios, the throughput and
//! fan-out runs, and the report.
//!
//! See `src/bin/bus.rs` for the command line and the procedure.

pub(crate) mod child;
pub(crate) mod fanout;
pub(crate) mod latency;
pub(crate) mod report;
pub(crate) mod roles;

use std::sync::atomic::{AtomicU32, Ordering};

/// A port id no other run uses: the harness's pid and a counter, in a range the kernel never assigns by itself
/// (it gives a process's first socket its pid and further ones ids counting down from `0xfffff000`).
pub(crate) fn unique_port() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) & 0xfff;
    0x5000_0000 | ((std::process::id() & 0xffff) << 12) | n
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process, so times taken in different processes
/// can be compared.
pub(crate) fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU time (user + system) of every thread of process `pid` so far, in nanoseconds, from
/// `/proc/PID/task/*/schedstat`; 0 if it cannot be read.
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .sum()
}

/// The kernel's drop counter (`Drops` in `/proc/net/netlink`) of the `NETLINK_USERSOCK` socket bound to
/// `port`, if there is one.
pub(crate) fn netlink_drops(port: u32) -> Option<u64> {
    let sockets = crate::common::netlink_sockets().ok()?;
    sockets.iter().find(|s| s.protocol == 2 && s.port == port).map(|s| s.drops)
}

/// CPU time of the calling thread so far, in nanoseconds (`/proc/thread-self/schedstat`); 0 if unreadable.
pub(crate) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The 1-minute load average (first field of `/proc/loadavg`), recorded with every run to show how busy the
/// shared machine was; NaN if unreadable.
pub(crate) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}
