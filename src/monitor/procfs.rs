//! Reading what `/proc/PID` says about a process, tolerating that it may be gone by the time we look.

use std::fs::File;
use std::io::Read;
use std::rc::Rc;

use super::enrich::ProcInfo;

/// `PF_KTHREAD` in the `flags` field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// Which files to read for each process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wants {
    /// `/proc/PID/status` for the real and effective uid.
    pub(crate) uids: bool,
    /// `/proc/PID/cgroup`.
    pub(crate) cgroup: bool,
}

/// Reads `/proc` with one reusable buffer.
#[derive(Debug)]
pub(crate) struct ProcReader {
    buf: Vec<u8>,
    wants: Wants,
    /// `CLOCK_BOOTTIME - CLOCK_MONOTONIC` in ns at start: `/proc/PID/stat` start times count from boot.
    boot_minus_mono: u64,
    ns_per_tick: u64,
    /// Reads attempted and failed (process gone).
    pub(crate) failures: u64,
}

impl ProcReader {
    pub(crate) fn new(wants: Wants) -> Self {
        use rustix::time::{clock_gettime, ClockId};
        let ns = |t: rustix::time::Timespec| t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
        let mono = ns(clock_gettime(ClockId::Monotonic));
        let boot = ns(clock_gettime(ClockId::Boottime));
        let hz = rustix::param::clock_ticks_per_second().max(1);
        ProcReader {
            buf: Vec::with_capacity(4096),
            wants,
            boot_minus_mono: boot.saturating_sub(mono),
            ns_per_tick: 1_000_000_000 / hz,
            failures: 0,
        }
    }

    fn read(&mut self, pid: i32, file: &str) -> Option<usize> {
        self.buf.clear();
        let path = format!("/proc/{pid}/{file}");
        let r = File::open(path).and_then(|mut f| f.read_to_end(&mut self.buf));
        r.ok()
    }

    /// Everything about `pid`, or `None` if it is gone (or never was).
    pub(crate) fn process(&mut self, pid: i32) -> Option<ProcInfo> {
        let Some(info) = self.read(pid, "stat").and_then(|_| self.parse_stat()) else {
            self.failures += 1;
            return None;
        };
        let mut info = info;
        if !info.kthread && self.read(pid, "cmdline").is_some() {
            info.cmdline = cmdline(&self.buf);
        }
        if self.wants.uids && self.read(pid, "status").is_some() {
            (info.uid, info.euid) = status_uids(&self.buf);
        }
        if self.wants.cgroup && self.read(pid, "cgroup").is_some() {
            info.cgroup = cgroup_path(&self.buf);
        }
        Some(info)
    }

    /// `/proc/PID/stat`: `pid (comm) state ppid pgrp session tty_nr tpgid flags ... starttime(22)`.
    fn parse_stat(&self) -> Option<ProcInfo> {
        let b = &self.buf;
        let open = b.iter().position(|&c| c == b'(')?;
        let close = b.iter().rposition(|&c| c == b')')?;
        let comm = String::from_utf8_lossy(b.get(open + 1..close)?);
        let rest = std::str::from_utf8(b.get(close + 2..)?).ok()?;
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        // `rest` starts at field 3 (state): field n is f[n - 3].
        let field = |n: usize| f.get(n - 3).and_then(|s| s.parse::<i64>().ok());
        let flags = field(9)? as u64;
        let start_ticks = field(22)? as u64;
        let start_boot = start_ticks.saturating_mul(self.ns_per_tick);
        Some(ProcInfo {
            comm: Rc::from(comm.as_ref()),
            ppid: field(4)? as i32,
            pgid: field(5)? as i32,
            tty: field(7)? as u32,
            kthread: flags & PF_KTHREAD != 0,
            start_ns: start_boot.checked_sub(self.boot_minus_mono),
            ..ProcInfo::default()
        })
    }
}

/// The command line with NULs as spaces, lossily as UTF-8 (it need not be UTF-8), trailing NULs dropped.
pub(crate) fn cmdline(b: &[u8]) -> Rc<str> {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    let s = String::from_utf8_lossy(&b[..end]);
    Rc::from(s.replace(['\0', '\n'], " ").as_str())
}

/// `Uid:\treal\teffective\tsaved\tfs` from `/proc/PID/status`.
fn status_uids(b: &[u8]) -> (Option<u32>, Option<u32>) {
    let text = String::from_utf8_lossy(b);
    let Some(line) = text.lines().find(|l| l.starts_with("Uid:")) else { return (None, None) };
    let mut it = line[4..].split_ascii_whitespace().map(|s| s.parse().ok());
    (it.next().flatten(), it.next().flatten())
}

/// The cgroup v2 path (`0::/path`), else the first hierarchy's path.
pub(crate) fn cgroup_path(b: &[u8]) -> Rc<str> {
    let text = String::from_utf8_lossy(b);
    let pick = text.lines().find(|l| l.starts_with("0::")).or_else(|| text.lines().next()).unwrap_or("");
    Rc::from(pick.splitn(3, ':').nth(2).unwrap_or(""))
}

/// Every numeric entry of `/proc`.
pub(crate) fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Whether `/proc/PID` still exists (for threads too).
pub(crate) fn exists(pid: i32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// The terminal of a `tty_nr` from `/proc/PID/stat`, as `ps` names it.
pub(crate) fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        _ => format!("{major}:{minor}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let mut r = ProcReader::new(Wants { uids: true, cgroup: true });
        let me = std::process::id() as i32;
        let info = r.process(me).expect("own /proc entry");
        assert!(!info.kthread);
        assert!(!info.cmdline.is_empty());
        assert_eq!(info.uid, Some(rustix::process::getuid().as_raw()));
        assert!(info.start_ns.is_some());
        assert!(r.process(-5).is_none());
    }

    #[test]
    fn parses_cmdline_and_cgroup() {
        assert_eq!(&*cmdline(b"ls\0-l\0\xff\0"), "ls -l \u{fffd}");
        assert_eq!(&*cgroup_path(b"0::/user.slice/a.scope\n"), "/user.slice/a.scope");
        assert_eq!(&*cgroup_path(b"12:pids:/x\n0::/y\n"), "/y");
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(136 << 8 | 3), "pts/3");
        assert_eq!(tty_name(4 << 8 | 1), "tty1");
    }
}
