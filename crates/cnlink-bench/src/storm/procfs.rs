//! What the harness reads from `/proc` about a listener: its proc-connector socket (queue length
//! and kernel drop count from `/proc/net/netlink`) and its CPU time so far.
//!
//! `/proc/net/netlink` columns: `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`, where `Eth`
//! is the netlink protocol (11 = `NETLINK_CONNECTOR`), `Groups` the first 32 group bits in hex,
//! `Rmem` the bytes queued for reading and `Drops` the messages the kernel dropped because the
//! receive buffer was full.

use std::collections::HashSet;
use std::fs;
use std::io;

/// `NETLINK_CONNECTOR`.
const NETLINK_CONNECTOR: u32 = 11;

/// One row of `/proc/net/netlink` for a connector socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NlSock {
    /// Bytes waiting in the receive queue.
    pub(crate) rmem: u64,
    /// Messages the kernel dropped for this socket (receive buffer full).
    pub(crate) drops: u64,
    /// Socket inode.
    pub(crate) inode: u64,
}

/// Parses one data row of `/proc/net/netlink`; `None` for the header or a malformed row.
fn parse_row(line: &str) -> Option<(u32, u32, NlSock)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    let eth = f[1].parse().ok()?;
    let groups = u32::from_str_radix(f[3], 16).ok()?;
    let sock = NlSock { rmem: f[4].parse().ok()?, drops: f[8].parse().ok()?, inode: f[9].parse().ok()? };
    Some((eth, groups, sock))
}

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
    let table = fs::read_to_string("/proc/net/netlink")?;
    Ok(table
        .lines()
        .filter_map(parse_row)
        .find(|(eth, groups, s)| *eth == NETLINK_CONNECTOR && groups & 1 == 1 && inodes.contains(&s.inode))
        .map(|(_, _, s)| s))
}

/// The socket with inode `inode`, re-read (its queue and drop counters change).
pub(crate) fn socket_by_inode(inode: u64) -> io::Result<Option<NlSock>> {
    let table = fs::read_to_string("/proc/net/netlink")?;
    Ok(table.lines().filter_map(parse_row).map(|(_, _, s)| s).find(|s| s.inode == inode))
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
    fn parses_a_netlink_row() {
        let row = "0000000048e5f0e4 11  6397       00000001 2304     0        0     2        7        10103   ";
        let (eth, groups, s) = parse_row(row).unwrap();
        assert_eq!((eth, groups), (11, 1));
        assert_eq!(s, NlSock { rmem: 2304, drops: 7, inode: 10103 });
        assert!(parse_row("sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode")
            .is_none());
    }

    #[test]
    fn own_cpu_ticks_are_readable() {
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        assert!(cpu_ticks(pid).is_ok());
        assert!(peak_rss_kib(pid).unwrap() > 0);
    }
}
