//! [`LiveProc`]: observations read from the live `/proc`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use super::parse::{parse_cmdline, parse_exe, parse_ns_link, parse_stat, parse_status};
use super::{CgroupFile, EnrichStatus, Limits, Observation, PathRead, ProcSource, Snapshot, Wants};

/// Reads `/proc` (or another procfs mount) with one reusable buffer.
#[derive(Debug)]
pub struct LiveProc {
    root: String,
    limits: Limits,
    buf: Vec<u8>,
    /// Observations whose first `stat` failed (the process was gone).
    pub gone: u64,
}

impl Default for LiveProc {
    fn default() -> Self {
        LiveProc::new(Limits::default())
    }
}

/// Nanoseconds of a clock.
fn clock_ns(id: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(id);
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// `CLOCK_BOOTTIME - CLOCK_MONOTONIC` now, in ns.
pub(crate) fn boot_offset_ns() -> u64 {
    let mono = clock_ns(rustix::time::ClockId::Monotonic);
    let boot = clock_ns(rustix::time::ClockId::Boottime);
    boot.saturating_sub(mono)
}

impl LiveProc {
    /// A reader of `/proc` with these bounds.
    pub fn new(limits: Limits) -> LiveProc {
        LiveProc::with_root("/proc", limits)
    }

    /// A reader of a procfs mounted at `root`.
    pub fn with_root(root: &str, limits: Limits) -> LiveProc {
        LiveProc { root: root.trim_end_matches('/').to_owned(), limits, buf: Vec::with_capacity(4096), gone: 0 }
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `sysconf(_SC_CLK_TCK)`.
    pub fn ticks_per_second() -> u64 {
        rustix::param::clock_ticks_per_second().max(1)
    }

    /// Reads `file` under `dir` into `self.buf`, at most `limit` bytes kept; returns whether it was cut.
    fn read_at(&mut self, dir: &OwnedFd, file: &str, limit: usize) -> io::Result<bool> {
        let fd = rustix::fs::openat(dir.as_fd(), file, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        self.fill(&fd, limit)
    }

    /// Reads `fd` into `self.buf`: at least `limit + 1` bytes of room, so that one `read` takes the whole file
    /// (procfs hands these files out whole, and a read that returns less than the room is their end). Keeps
    /// at most `limit` bytes; returns whether there was more.
    fn fill(&mut self, fd: &OwnedFd, limit: usize) -> io::Result<bool> {
        self.buf.clear();
        self.buf.reserve(limit + 1);
        loop {
            let room = self.buf.capacity() - self.buf.len();
            if room == 0 {
                break;
            }
            let n = rustix::io::read(fd, rustix::buffer::spare_capacity(&mut self.buf))?;
            if n == 0 || n < room || self.buf.len() > limit {
                break;
            }
        }
        let cut = self.buf.len() > limit;
        self.buf.truncate(limit);
        Ok(cut)
    }

    fn link_at(dir: &OwnedFd, file: &str) -> io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(dir.as_fd(), file, Vec::new())?.into_bytes())
    }

    /// The start time and name in `/proc/PID/stat`, looked up afresh by path (not through the directory
    /// handle).
    fn stat_now(&mut self, pid: i32) -> Option<(u64, Vec<u8>)> {
        self.stat_now_full(pid).map(|s| (s.start_ticks, s.name))
    }

    /// Reads `pid`; once more if it exec'd meanwhile (its name changed), so that the program's fields are one
    /// program's.
    fn read(&mut self, pid: i32, wants: Wants) -> Observation {
        if wants == Wants::STAT {
            return self.read_stat(pid);
        }
        let (obs, changed) = self.read_once(pid, wants);
        if changed {
            return self.read_once(pid, wants).0;
        }
        obs
    }

    /// `stat` alone: one file, read in one go, needs no directory handle nor a second look.
    fn read_stat(&mut self, pid: i32) -> Observation {
        let mut obs = Observation::gone(pid, boot_offset_ns());
        if pid > 0 {
            if let Some(stat) = self.stat_now_full(pid) {
                obs.stat = Some(stat);
                obs.status = EnrichStatus::Ok;
            }
        }
        obs
    }

    fn stat_now_full(&mut self, pid: i32) -> Option<super::Stat> {
        let path = format!("{}/{pid}/stat", self.root);
        let fd = rustix::fs::open(path.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
        self.fill(&fd, self.limits.file_bytes).ok()?;
        parse_stat(&self.buf)
    }

    fn read_once(&mut self, pid: i32, wants: Wants) -> (Observation, bool) {
        let boot_offset_ns = boot_offset_ns();
        let mut obs = Observation::gone(pid, boot_offset_ns);
        if pid <= 0 {
            return (obs, false);
        }
        let dir = match rustix::fs::open(
            format!("{}/{pid}", self.root).as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => d,
            Err(_) => return (obs, false),
        };
        let limits = self.limits;
        // The arguments first: they are what a short-lived program loses first (its memory goes at exit, before
        // the rest). `None`: not read, or empty (a kernel thread, or a process without its memory any more: an
        // exec always leaves at least one argument, if empty).
        let argv = wants.program.then(|| match self.read_at(&dir, "cmdline", limits.argv_bytes) {
            Ok(_) if self.buf.is_empty() => None,
            Ok(cut) => Some(parse_cmdline(&self.buf, limits.argv_count, limits.argv_bytes, cut)),
            Err(_) => None,
        });
        let stat = match self.read_at(&dir, "stat", limits.file_bytes) {
            Ok(_) => parse_stat(&self.buf),
            Err(_) => None,
        };
        let Some(stat) = stat else { return (obs, false) };
        let kthread = stat.kthread();
        let first_start = stat.start_ticks;
        obs.stat = Some(stat);
        let mut missing = false;
        if wants.program && !kthread {
            match argv.flatten() {
                Some(a) => obs.argv = Some(a),
                None => missing = true,
            }
            match Self::link_at(&dir, "exe") {
                Ok(link) => obs.exe = Some(parse_exe(&link, limits.path_bytes)),
                Err(_) => missing = true,
            }
        }
        if wants.cwd && !kthread {
            match Self::link_at(&dir, "cwd") {
                Ok(mut p) => {
                    let truncated = p.len() > limits.path_bytes;
                    p.truncate(limits.path_bytes);
                    obs.cwd = Some(PathRead { path: p, truncated });
                }
                Err(_) => missing = true,
            }
        }
        if wants.status {
            match self.read_at(&dir, "status", limits.file_bytes) {
                Ok(_) => match parse_status(&self.buf) {
                    Some(s) => obs.status_fields = Some(s),
                    None => missing = true,
                },
                Err(_) => missing = true,
            }
        }
        if wants.cgroup {
            match self.read_at(&dir, "cgroup", limits.file_bytes) {
                Ok(truncated) => obs.cgroup = Some(CgroupFile { bytes: self.buf.clone(), truncated }),
                Err(_) => missing = true,
            }
        }
        if wants.namespaces {
            obs.pid_ns = Self::link_at(&dir, "ns/pid").ok().and_then(|l| parse_ns_link(&l));
            obs.mnt_ns = Self::link_at(&dir, "ns/mnt").ok().and_then(|l| parse_ns_link(&l));
            missing |= obs.pid_ns.is_none() || obs.mnt_ns.is_none();
        }
        let now = self.stat_now(pid);
        let renamed = match (&now, &obs.stat) {
            (Some((t, name)), Some(s)) => *t == first_start && *name != s.name,
            _ => false,
        };
        obs.status = match (now.map(|(t, _)| t), missing) {
            (Some(t), _) if t != first_start => EnrichStatus::PidReused,
            (Some(_), true) => EnrichStatus::Partial,
            (None, true) => EnrichStatus::Gone,
            (_, false) => EnrichStatus::Ok,
        };
        (obs, renamed)
    }
}

impl ProcSource for LiveProc {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        let obs = self.read(pid, wants);
        if obs.stat.is_none() {
            self.gone += 1;
        }
        obs
    }

    fn exists(&mut self, pid: i32) -> bool {
        pid > 0 && std::fs::metadata(format!("{}/{pid}", self.root)).is_ok()
    }

    fn pgid(&mut self, pid: i32) -> Option<i32> {
        if self.root != "/proc" {
            return self.observe(pid, Wants::STAT).stat.map(|s| s.pgid);
        }
        let p = rustix::process::Pid::from_raw(pid)?;
        rustix::process::getpgid(Some(p)).ok().map(|g| g.as_raw_nonzero().get())
    }

    fn snapshot(&mut self, wants: Wants) -> Snapshot {
        let mut pids: Vec<i32> = match std::fs::read_dir(&self.root) {
            Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
            Err(_) => Vec::new(),
        };
        pids.sort_unstable();
        let processes = pids.into_iter().map(|pid| self.read(pid, wants)).filter(|o| o.stat.is_some()).collect();
        Snapshot { ticks_per_second: Self::ticks_per_second(), processes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let mut r = LiveProc::default();
        let me = std::process::id() as i32;
        let o = r.observe(me, Wants::ALL);
        assert_eq!(o.status, EnrichStatus::Ok, "{o:?}");
        let stat = o.stat.as_ref().unwrap();
        assert_eq!(stat.pid, me);
        assert_eq!(stat.ppid, rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()));
        let s = o.status_fields.as_ref().unwrap();
        assert_eq!(s.ruid, rustix::process::getuid().as_raw());
        assert_eq!(s.egid, rustix::process::getegid().as_raw());
        let argv: Vec<Vec<u8>> = o.argv.as_ref().unwrap().args().map(<[u8]>::to_vec).collect();
        let mine: Vec<Vec<u8>> =
            std::env::args_os().map(|a| std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()).to_vec()).collect();
        assert_eq!(argv, mine);
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert_eq!(o.exe.as_ref().unwrap().path, std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()));
        assert!(o.pid_ns.is_some() && o.mnt_ns.is_some());
        assert!(o.cgroup.is_some());
    }

    #[test]
    fn stat_alone_is_read_in_one_go() {
        let mut r = LiveProc::default();
        let me = std::process::id() as i32;
        let o = r.observe(me, Wants::STAT);
        assert_eq!((o.status, o.stat.as_ref().map(|s| s.pid)), (EnrichStatus::Ok, Some(me)));
        assert!(o.argv.is_none() && o.status_fields.is_none());
        assert_eq!(o.start_ticks(), r.observe(me, Wants::ALL).start_ticks());
        assert_eq!(r.observe(i32::MAX, Wants::STAT).status, EnrichStatus::Gone);
    }

    #[test]
    fn missing_processes_are_gone() {
        let mut r = LiveProc::default();
        assert_eq!(r.observe(-5, Wants::ALL).status, EnrichStatus::Gone);
        assert_eq!(r.observe(i32::MAX, Wants::ALL).status, EnrichStatus::Gone);
        assert!(!r.exists(i32::MAX));
        assert!(r.exists(1));
    }

    #[test]
    fn bounds_cut_and_flag() {
        let mut r = LiveProc::new(Limits { argv_bytes: 4, ..Limits::default() });
        let o = r.observe(std::process::id() as i32, Wants::ALL);
        let argv = o.argv.unwrap();
        assert!(argv.truncated && argv.bytes.len() <= 4);
        assert!(o.stat.is_some());
    }
}
