//! What `/proc` says about a client's socket: which socket (inode) is bound to a port, and whether a process holds
//! it. The pid in a netlink datagram's `SCM_CREDENTIALS` is the sender's pid in the sender's own pid namespace,
//! never translated, so before watching that pid the daemon checks that the process it names really holds the
//! sending socket; when a watched process exits it checks whether the socket lives on in another process (after a
//! `fork`, or passed over a unix socket); and it checks now and then that the sockets of the clients it cannot
//! watch are still bound.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `NETLINK_USERSOCK`, the `Eth` column of `/proc/net/netlink`.
const USERSOCK: u32 = 2;
/// The most of `/proc/net/netlink` read (about 40,000 sockets): any user can open netlink sockets, and the table
/// is read on the receive thread.
const MAX_NETLINK_TABLE: usize = 4 << 20;
/// The most open files of a process looked through for a client's socket.
const MAX_FDS: usize = 1024;

/// The inode of the `NETLINK_USERSOCK` socket bound to `port` in this network namespace, from
/// `/proc/net/netlink` (`None` when no socket is bound there, or the file cannot be read).
pub(crate) fn socket_inode(port: u32) -> Option<u64> {
    usersock_inodes()?.remove(&port)
}

/// Every `NETLINK_USERSOCK` port bound in this network namespace, with its socket's inode (`None` when
/// `/proc/net/netlink` cannot be read, or is larger than [`MAX_NETLINK_TABLE`]).
pub(crate) fn usersock_inodes() -> Option<HashMap<u32, u64>> {
    let mut text = String::new();
    let file = std::fs::File::open("/proc/net/netlink").ok()?;
    file.take(MAX_NETLINK_TABLE as u64 + 1).read_to_string(&mut text).ok()?;
    (text.len() <= MAX_NETLINK_TABLE).then(|| inodes_in(&text))
}

/// The `NETLINK_USERSOCK` rows of `/proc/net/netlink` text (`sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`):
/// port (`Pid`) to `Inode`. Rows that do not parse are skipped.
fn inodes_in(text: &str) -> HashMap<u32, u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let eth: u32 = cols.get(1)?.parse().ok()?;
            (eth == USERSOCK).then_some(())?;
            Some((cols.get(2)?.parse().ok()?, cols.get(9)?.parse().ok()?))
        })
        .collect()
}

/// Whether the process behind `pidfd` has socket `inode` among its first [`MAX_FDS`] open files. Its pid is read
/// from the pidfd's `fdinfo`, in `/proc`'s own pid namespace; false when `/proc` does not show it (another pid
/// namespace, `hidepid`, an exited process) or its files cannot be read (another user's process, for a daemon
/// that is not root).
pub(crate) fn holds_socket(pidfd: BorrowedFd<'_>, inode: u64) -> bool {
    let Some(pid) = fdinfo_pid(pidfd.as_raw_fd()) else { return false };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    let want = format!("socket:[{inode}]");
    fds.take(MAX_FDS)
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == want.as_str()))
}

/// The `Pid:` line of `/proc/self/fdinfo/FD` for a pidfd: the process's pid as `/proc` numbers it (0 or -1 when
/// it is not visible there or has exited).
fn fdinfo_pid(fd: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let pid = text.lines().find_map(|l| l.strip_prefix("Pid:"))?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_usersock_port() {
        let text = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n\
                    0000000046784cc4 0   12345      00000000 0        0        0     2        0        4       \n\
                    000000002e8f5d64 2   12345      00000000 0        0        0     2        0        29825   \n\
                    000000002e8f5d65 2   4294967295 00000000 0        0        0     2        0        7\n\
                    garbage\n";
        let ports = inodes_in(text);
        assert_eq!(ports.get(&12345), Some(&29825), "protocol 2 only");
        assert_eq!(ports.get(&u32::MAX), Some(&7));
        assert_eq!(ports.len(), 2);
        assert!(inodes_in("").is_empty());
    }

    #[test]
    fn our_own_socket_is_found_in_our_files() {
        let sock = cnlink::socket::Socket::open(cnlink::socket::Protocol::Usersock).unwrap();
        let inode = socket_inode(sock.port()).expect("our socket is listed");
        let me = rustix::process::pidfd_open(rustix::process::getpid(), rustix::process::PidfdFlags::empty()).unwrap();
        use std::os::fd::AsFd;
        assert!(holds_socket(me.as_fd(), inode));
        assert!(!holds_socket(me.as_fd(), inode + 1_000_000));
    }
}
