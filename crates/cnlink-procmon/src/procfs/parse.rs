//! Pure parsers of `/proc/PID` file contents. Every parser takes bytes of any kind (truncated, hostile, not
//! UTF-8) and returns `None` or a bounded value; none panics or allocates more than its input and limits allow.

use super::{Argv, Exe, Stat, StatusFields};

/// `PF_KTHREAD` in the `flags` field of `/proc/PID/stat`.
pub const PF_KTHREAD: u64 = 0x0020_0000;

/// Longest name kept from `stat` (the kernel's `comm` is 16 bytes, but `stat` shows longer workqueue names for
/// kworkers).
pub const MAX_STAT_NAME: usize = 64;

/// Most pid namespace levels kept from `NSpid` (the kernel nests at most 32).
pub const MAX_NS_LEVELS: usize = 32;

/// `/proc/PID/stat`: `pid (comm) state ppid pgrp session tty_nr tpgid flags ... num_threads(20) ...
/// starttime(22) ...`.
///
/// The name sits between the first `(` and the *last* `)`: it may itself hold parentheses, spaces and newlines.
pub fn parse_stat(b: &[u8]) -> Option<Stat> {
    let open = b.iter().position(|&c| c == b'(')?;
    let close = b.iter().rposition(|&c| c == b')')?;
    if close < open {
        return None;
    }
    let pid = std::str::from_utf8(&b[..open]).ok()?.trim().parse().ok()?;
    let name = &b[open + 1..close];
    let rest = std::str::from_utf8(b.get(close + 1..)?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    // `f` starts at field 3 (state).
    let state = *f.next()?.as_bytes().first()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    let sid = f.next()?.parse().ok()?;
    let tty_nr = f.next()?.parse().ok()?;
    let _tpgid = f.next()?;
    let flags: u64 = f.next()?.parse::<u64>().ok()?;
    // Fields 10..=19, then num_threads (20), itrealvalue (21), starttime (22).
    let num_threads = f.nth(10)?.parse().ok()?;
    let start_ticks = f.nth(1)?.parse().ok()?;
    Some(Stat {
        pid,
        name: name[..name.len().min(MAX_STAT_NAME)].to_vec(),
        state,
        ppid,
        pgid,
        sid,
        tty_nr,
        flags,
        num_threads,
        start_ticks,
    })
}

/// `/proc/PID/cmdline`: NUL-terminated arguments. At most `max_args` arguments and `max_bytes` bytes are kept;
/// `truncated` says that more were there, or that `input_truncated` (the read stopped at its bound).
///
/// A process may rewrite its argument area (`setproctitle`), so the last argument need not end with a NUL.
pub fn parse_cmdline(b: &[u8], max_args: usize, max_bytes: usize, input_truncated: bool) -> Argv {
    let mut bytes = Vec::with_capacity(b.len().min(max_bytes));
    let mut count = 0u32;
    let mut truncated = input_truncated;
    let end = match b.last() {
        Some(0) => b.len() - 1,
        _ => b.len(),
    };
    if end > 0 || b.first() == Some(&0) {
        for arg in b[..end].split(|&c| c == 0) {
            if count as usize >= max_args || bytes.len() + arg.len() + 1 > max_bytes {
                truncated = true;
                break;
            }
            bytes.extend_from_slice(arg);
            bytes.push(0);
            count += 1;
        }
    }
    Argv { bytes, count, truncated }
}

/// The fields of `/proc/PID/status` we use: `Uid:`, `Gid:` (real, effective, saved, fs) and `NSpid:`.
pub fn parse_status(b: &[u8]) -> Option<StatusFields> {
    let mut uid = None;
    let mut gid = None;
    let mut nspid = Vec::new();
    for line in b.split(|&c| c == b'\n') {
        if let Some(v) = line.strip_prefix(b"Uid:") {
            uid = ids(v);
        } else if let Some(v) = line.strip_prefix(b"Gid:") {
            gid = ids(v);
        } else if let Some(v) = line.strip_prefix(b"NSpid:") {
            let text = std::str::from_utf8(v).ok()?;
            nspid = text.split_ascii_whitespace().take(MAX_NS_LEVELS).filter_map(|s| s.parse().ok()).collect();
        }
    }
    let (ruid, euid) = uid?;
    let (rgid, egid) = gid?;
    Some(StatusFields { ruid, euid, rgid, egid, nspid })
}

/// The first two numbers of a `Uid:`/`Gid:` line.
fn ids(v: &[u8]) -> Option<(u32, u32)> {
    let mut it = std::str::from_utf8(v).ok()?.split_ascii_whitespace().map(|s| s.parse().ok());
    Some((it.next()??, it.next()??))
}

/// The target of `/proc/PID/exe`, with the kernel's markers read: a ` (deleted)` suffix (the file was unlinked
/// after the exec; memfds always carry it) and a `/memfd:` prefix (an anonymous memory file).
pub fn parse_exe(link: &[u8], max_bytes: usize) -> Exe {
    const DELETED: &[u8] = b" (deleted)";
    let (path, deleted) = match link.strip_suffix(DELETED) {
        Some(p) => (p, true),
        None => (link, false),
    };
    let memfd = path.starts_with(b"/memfd:");
    let truncated = path.len() > max_bytes;
    Exe { path: path[..path.len().min(max_bytes)].to_vec(), deleted, memfd, truncated }
}

/// The inode of a namespace link target such as `pid:[4026531836]`.
pub fn parse_ns_link(link: &[u8]) -> Option<u64> {
    let open = link.iter().position(|&c| c == b'[')?;
    let inner = link.get(open + 1..)?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// One line of `/proc/PID/cgroup`: `hierarchy-ID:controller-list:cgroup-path`; v2 is `0::/path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    /// The hierarchy id (0 for cgroup v2).
    pub hierarchy: u32,
    /// The controllers, comma-separated (empty for v2; `name=systemd` for systemd's named v1 hierarchy).
    pub controllers: &'a [u8],
    /// The path, relative to the hierarchy's root. It may hold `:` (containerd's systemd-style names do).
    pub path: &'a [u8],
}

/// The lines of a `/proc/PID/cgroup` file; malformed lines are skipped, at most `max_lines` are read.
pub fn cgroup_lines(b: &[u8], max_lines: usize) -> impl Iterator<Item = CgroupLine<'_>> {
    b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).take(max_lines).filter_map(|line| {
        let mut parts = line.splitn(3, |&c| c == b':');
        let hierarchy = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        Some(CgroupLine { hierarchy, controllers, path })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_name() {
        // A name with spaces, parentheses and a newline; the fields after the last ')' still parse.
        let line = b"4242 (a) b (\nc) S 1 4242 4242 34816 4242 4194560 110 0 0 0 0 0 0 0 20 0 3 0 123456 \
            1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let s = parse_stat(line).expect("parses");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.name, b"a) b (\nc");
        assert_eq!((s.state, s.ppid, s.pgid, s.sid, s.tty_nr), (b'S', 1, 4242, 4242, 34816));
        assert_eq!((s.flags, s.num_threads, s.start_ticks), (4194560, 3, 123456));
        assert!(!s.kthread());
        assert!(parse_stat(b"1 (x) S 0").is_none());
        assert!(parse_stat(b") 1 (").is_none());
        assert!(parse_stat(b"").is_none());
    }

    #[test]
    fn kthread_flag() {
        let line = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0 18446744073709551615 0 0";
        let s = parse_stat(line).unwrap();
        assert!(s.kthread());
        assert_eq!(s.start_ticks, 0);
    }

    #[test]
    fn cmdline_bounds() {
        let a = parse_cmdline(b"ls\0-l\0\xff\0", 16, 1024, false);
        assert_eq!(a.args().collect::<Vec<_>>(), [&b"ls"[..], b"-l", b"\xff"]);
        assert!(!a.truncated);
        // An empty argument is kept: boundaries are exact.
        let a = parse_cmdline(b"echo\0\0x\0", 16, 1024, false);
        assert_eq!(a.args().collect::<Vec<_>>(), [&b"echo"[..], b"", b"x"]);
        // setproctitle: no final NUL.
        let a = parse_cmdline(b"nginx: master process", 16, 1024, false);
        assert_eq!(a.count, 1);
        let a = parse_cmdline(b"a\0b\0c\0", 2, 1024, false);
        assert_eq!((a.count, a.truncated), (2, true));
        let a = parse_cmdline(b"aaaa\0bbbb\0", 16, 6, false);
        assert_eq!((a.count, a.truncated), (1, true));
        let a = parse_cmdline(b"", 16, 1024, false);
        assert_eq!((a.count, a.bytes.len()), (0, 0));
        let a = parse_cmdline(b"\0", 16, 1024, false);
        assert_eq!(a.args().collect::<Vec<_>>(), [&b""[..]]);
    }

    #[test]
    fn status_fields() {
        let s =
            parse_status(b"Name:\tsh\nUid:\t1000\t1001\t1000\t1000\nGid:\t5\t6\t5\t5\nNSpid:\t15611\t7\t1\n").unwrap();
        assert_eq!((s.ruid, s.euid, s.rgid, s.egid), (1000, 1001, 5, 6));
        assert_eq!(s.nspid, [15611, 7, 1]);
        assert!(parse_status(b"Uid:\tx\n").is_none());
    }

    #[test]
    fn exe_markers() {
        let e = parse_exe(b"/memfd:payload (deleted)", 4096);
        assert_eq!((e.path.as_slice(), e.deleted, e.memfd), (&b"/memfd:payload"[..], true, true));
        let e = parse_exe(b"/tmp/x (deleted)", 4096);
        assert_eq!((e.deleted, e.memfd), (true, false));
        let e = parse_exe(b"/usr/bin/sleep", 4);
        assert_eq!((e.path.as_slice(), e.truncated), (&b"/usr"[..], true));
    }

    #[test]
    fn ns_links_and_cgroup_lines() {
        assert_eq!(parse_ns_link(b"pid:[4026531836]"), Some(4026531836));
        assert_eq!(parse_ns_link(b"pid:[x]"), None);
        assert_eq!(parse_ns_link(b"pid:[1"), None);
        let lines: Vec<_> = cgroup_lines(b"12:pids:/a\n1:name=systemd:/b:c:d\nbad\n0::/\n", 64).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[1].controllers, lines[1].path), (&b"name=systemd"[..], &b"/b:c:d"[..]));
        assert_eq!(lines[2].hierarchy, 0);
    }
}
