//! What the harness reads from `/proc` about a listener: its proc-connector socket (queue length
//! and kernel drop count from `/proc/net/netlink`) and its CPU time so far.

use std::collections::HashSet;
use std::fs;
use std::io;

/// `NETLINK_CONNECTOR`.
const NETLINK_CONNECTOR: u32 = 11;

pub(crate) use crate::common::NlSock;

/// Socket inodes among the open fds of `pid`.
fn socket_inodes(pid: i32) -> io::Result<HashSet<u64>> {
    let mut out = HashSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            if let Ok(inode) = inode.parse() {
                out.insert(inode);
            }
        }
    }
    Ok(out)
}

/// The connector socket of process `pid` that is a member of group 1 (`CN_IDX_PROC`), if any.
pub(crate) fn proc_socket(pid: i32) -> io::Result<Option<NlSock>> {
    let inodes = socket_inodes(pid)?;
    if inodes.is_empty() {
        return Ok(None);
    }
    Ok(crate::common::netlink_sockets()?
        .into_iter()
        .find(|s| s.protocol == NETLINK_CONNECTOR && s.groups & 1 == 1 && inodes.contains(&s.inode)))
}

/// The socket with inode `inode`, re-read (its queue and drop counters change).
pub(crate) fn socket_by_inode(inode: u64) -> io::Result<Option<NlSock>> {
    Ok(crate::common::netlink_sockets()?.into_iter().find(|s| s.inode == inode))
}

/// User + system CPU time of `pid` so far, in clock ticks (from `/proc/PID/stat`).
pub(crate) fn cpu_ticks(pid: i32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The comm field may contain spaces; fields after the last ')' are well-formed.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ... utime is field 14, stime 15 (1-based), i.e. rest[11], rest[12].
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(utime + stime)
}

/// Peak resident set size of `pid`'s current program image, KiB (`VmHWM` in `/proc/PID/status`).
///
/// Unlike `wait4`'s `ru_maxrss`, this does not include the memory of the harness the listener was
/// forked (or vforked) from before it exec'd.
pub(crate) fn peak_rss_kib(pid: i32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmHWM in /proc/PID/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_ticks_and_peak_rss_are_readable() {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        assert!(cpu_ticks(pid).is_ok());
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }
}
