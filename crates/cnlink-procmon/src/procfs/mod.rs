//! What `/proc/PID` says about a process, as plain data ([`Observation`]), and where it comes from
//! ([`ProcSource`]): the live `/proc` ([`LiveProc`]) or anything that replays recorded observations.
//!
//! An observation is read in this order: `stat`, `cmdline`, `exe`, `cwd`, `status`, `cgroup`, `ns/pid`,
//! `ns/mnt`, all through one `/proc/PID` directory handle (so that every file is the same process's), then
//! `/proc/PID/stat` once more by path: its start time tells whether the pid still names the process that was
//! read (and its name whether it exec'd meanwhile: then the whole reading is done once more, so that the
//! program's fields are one program's). The result carries an [`EnrichStatus`]:
//!
//! | status | when |
//! |---|---|
//! | `ok` | every wanted file was read, and the pid still names the same process (or is gone after all reads) |
//! | `partial` | some files could not be read (permissions, a zombie's `exe`), the process still exists |
//! | `gone` | the process had exited before everything was read (nothing at all when the first `stat` failed) |
//! | `pid_reused` | the final `stat` shows a different start time: the pid now names another process |
//!
//! Every read is bounded ([`Limits`]); contents that are too long are cut and flagged `truncated`.

mod live;
pub mod parse;

use serde::{Deserialize, Serialize};

pub use live::LiveProc;

/// How trustworthy a process's metadata is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EnrichStatus {
    /// Read completely and verified, or inherited at fork from a parent that was.
    #[default]
    Ok,
    /// Some fields could not be read; those are absent.
    Partial,
    /// The process was gone before it could be read; what is known came from events (and the fork).
    Gone,
    /// The pid names another process now than the one the event was about: nothing read was used.
    PidReused,
}

impl EnrichStatus {
    /// `ok`, `partial`, `gone` or `pid_reused`.
    pub fn name(self) -> &'static str {
        match self {
            EnrichStatus::Ok => "ok",
            EnrichStatus::Partial => "partial",
            EnrichStatus::Gone => "gone",
            EnrichStatus::PidReused => "pid_reused",
        }
    }
}

/// Which files to read beyond `stat` (which is always read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wants {
    /// `cmdline` and `exe`.
    pub program: bool,
    /// `cwd`.
    pub cwd: bool,
    /// `status` (uids, gids, `NSpid`).
    pub status: bool,
    /// `cgroup`.
    pub cgroup: bool,
    /// `ns/pid` and `ns/mnt`.
    pub namespaces: bool,
}

impl Wants {
    /// Everything.
    pub const ALL: Wants = Wants { program: true, cwd: true, status: true, cgroup: true, namespaces: true };
    /// Only `stat` (identity: start time, parent, session).
    pub const STAT: Wants = Wants { program: false, cwd: false, status: false, cgroup: false, namespaces: false };

    /// Whether a reading with these wants holds every file `other` wants.
    pub fn covers(self, other: Wants) -> bool {
        (self.program || !other.program)
            && (self.cwd || !other.cwd)
            && (self.status || !other.status)
            && (self.cgroup || !other.cgroup)
            && (self.namespaces || !other.namespaces)
    }
}

impl Default for Wants {
    fn default() -> Self {
        Wants::ALL
    }
}

/// Bounds on what one observation reads and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of `cmdline` kept (arguments past it are dropped, `truncated` set).
    pub argv_bytes: usize,
    /// Arguments kept.
    pub argv_count: usize,
    /// Bytes of a path (`exe`, `cwd`).
    pub path_bytes: usize,
    /// Bytes read of `stat`, `status` and `cgroup`.
    pub file_bytes: usize,
    /// Lines of `cgroup` looked at.
    pub cgroup_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { argv_bytes: 32 * 1024, argv_count: 1024, path_bytes: 4096, file_bytes: 16 * 1024, cgroup_lines: 64 }
    }
}

/// The fields of `/proc/PID/stat` the model uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Field 1: the process id (in the reader's pid namespace).
    pub pid: i32,
    /// Field 2: the task name (`comm`, the same as `/proc/PID/comm`), at most 64 bytes.
    pub name: Vec<u8>,
    /// Field 3: state (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Field 4: parent pid.
    pub ppid: i32,
    /// Field 5: process group.
    pub pgid: i32,
    /// Field 6: session id.
    pub sid: i32,
    /// Field 7: controlling terminal (`major << 8 | minor`, with the high minor bits above), 0 for none.
    pub tty_nr: i32,
    /// Field 9: `PF_*` flags.
    pub flags: u64,
    /// Field 20: threads in the group.
    pub num_threads: i64,
    /// Field 22: start time in clock ticks since boot (`CLOCK_BOOTTIME`).
    pub start_ticks: u64,
}

impl Stat {
    /// A kernel thread (`PF_KTHREAD`).
    pub fn kthread(&self) -> bool {
        self.flags & parse::PF_KTHREAD != 0
    }
}

/// An argument vector: each argument followed by a NUL, so that boundaries are exact (an argument cannot hold a
/// NUL).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Argv {
    /// The arguments, each followed by a NUL.
    pub bytes: Vec<u8>,
    /// How many arguments `bytes` holds.
    pub count: u32,
    /// More arguments or bytes were there than the limits keep.
    pub truncated: bool,
}

impl Argv {
    /// The arguments.
    pub fn args(&self) -> impl Iterator<Item = &[u8]> {
        let end = self.bytes.len().saturating_sub(1);
        let body = if self.count == 0 { &[][..] } else { &self.bytes[..end] };
        body.split(|&c| c == 0).take(self.count as usize)
    }

    /// The arguments joined by spaces, lossily as UTF-8 (for display; the arguments themselves are exact).
    pub fn joined_lossy(&self) -> String {
        let end = self.bytes.len().saturating_sub(1);
        String::from_utf8_lossy(&self.bytes[..end]).replace('\0', " ")
    }
}

/// The target of `/proc/PID/exe`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Exe {
    /// The path, without the kernel's ` (deleted)` suffix.
    pub path: Vec<u8>,
    /// The file was unlinked after the exec (the kernel's ` (deleted)`; always set for memfds).
    pub deleted: bool,
    /// The program runs from a memfd (`/memfd:NAME`), a file that never had a path.
    pub memfd: bool,
    /// The path was longer than the limit.
    pub truncated: bool,
}

/// A path read from a link (`cwd`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRead {
    /// The path.
    pub path: Vec<u8>,
    /// The path was longer than the limit.
    pub truncated: bool,
}

/// The fields of `/proc/PID/status` the model uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFields {
    /// Real uid.
    pub ruid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub rgid: u32,
    /// Effective gid.
    pub egid: u32,
    /// The pid in each pid namespace, outermost (the reader's) first; two or more entries in a nested namespace.
    pub nspid: Vec<i32>,
}

/// The bytes of `/proc/PID/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFile {
    /// The file, up to the limit.
    pub bytes: Vec<u8>,
    /// The file was longer than the limit.
    pub truncated: bool,
}

/// One reading of `/proc/PID`: plain data, serializable, so that a recording can stand in for live reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The pid read.
    pub pid: i32,
    /// How the reading went.
    pub status: EnrichStatus,
    /// `CLOCK_BOOTTIME - CLOCK_MONOTONIC` in ns when it was read: converts the start time to the events' clock.
    pub boot_offset_ns: u64,
    /// `stat` (first reading); `None` when the process was gone.
    pub stat: Option<Stat>,
    /// `cmdline`.
    pub argv: Option<Argv>,
    /// `exe`.
    pub exe: Option<Exe>,
    /// `cwd`.
    pub cwd: Option<PathRead>,
    /// `status`.
    pub status_fields: Option<StatusFields>,
    /// `cgroup`.
    pub cgroup: Option<CgroupFile>,
    /// Inode of `ns/pid`.
    pub pid_ns: Option<u64>,
    /// Inode of `ns/mnt`.
    pub mnt_ns: Option<u64>,
}

impl Observation {
    /// An observation of a process that was not there.
    pub fn gone(pid: i32, boot_offset_ns: u64) -> Observation {
        Observation {
            pid,
            status: EnrichStatus::Gone,
            boot_offset_ns,
            stat: None,
            argv: None,
            exe: None,
            cwd: None,
            status_fields: None,
            cgroup: None,
            pid_ns: None,
            mnt_ns: None,
        }
    }

    /// The start time in ticks, when `stat` was read.
    pub fn start_ticks(&self) -> Option<u64> {
        self.stat.as_ref().map(|s| s.start_ticks)
    }

    /// Some field was cut at its limit.
    pub fn truncated(&self) -> bool {
        self.argv.as_ref().is_some_and(|a| a.truncated)
            || self.exe.as_ref().is_some_and(|e| e.truncated)
            || self.cwd.as_ref().is_some_and(|c| c.truncated)
            || self.cgroup.as_ref().is_some_and(|c| c.truncated)
    }
}

/// Everything `/proc` held at start: the table's seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `sysconf(_SC_CLK_TCK)`: the unit of [`Stat::start_ticks`].
    pub ticks_per_second: u64,
    /// One observation per process (thread group) found.
    pub processes: Vec<Observation>,
}

/// Where observations come from: the live `/proc` ([`LiveProc`]), a recording, or a mix (see [`Prefetched`]).
///
/// The process table does all its reading through this trait and nothing else.
pub trait ProcSource {
    /// Reads `/proc/PID` (the files `wants` names, and `stat`).
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation;

    /// Whether `/proc/PID` exists (a cheap check used when the table must make room).
    fn exists(&mut self, pid: i32) -> bool;

    /// Every process (thread group) in `/proc`, read with `wants`.
    fn snapshot(&mut self, wants: Wants) -> Snapshot;

    /// The process group of `pid` now (it changes with `setpgid`, which sends no event), or `None` when the
    /// process is gone. By default from `stat`; the live source asks the kernel (`getpgid`).
    fn pgid(&mut self, pid: i32) -> Option<i32> {
        self.observe(pid, Wants::STAT).stat.map(|s| s.pgid)
    }
}

/// A source that reads nothing: every process is gone, and nothing is known to have left (for a monitor that
/// must not read `/proc`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProc;

impl ProcSource for NoProc {
    fn observe(&mut self, pid: i32, _: Wants) -> Observation {
        Observation::gone(pid, 0)
    }

    fn exists(&mut self, _: i32) -> bool {
        true
    }

    fn snapshot(&mut self, _: Wants) -> Snapshot {
        Snapshot { ticks_per_second: 100, processes: Vec::new() }
    }

    fn pgid(&mut self, _: i32) -> Option<i32> {
        None
    }
}

/// A source that answers one pid with an observation read earlier (by the receive thread, the moment an exec
/// arrived) and everything else from `inner`.
#[derive(Debug)]
pub struct Prefetched<'a, S: ?Sized> {
    /// The observation to hand out once, for its pid, when it was read with what is asked for.
    pub observation: Option<Observation>,
    /// What `observation` was read with.
    pub wants: Wants,
    /// Where everything else comes from.
    pub inner: &'a mut S,
}

impl<S: ProcSource + ?Sized> ProcSource for Prefetched<'_, S> {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        match self.observation.take() {
            Some(o) if o.pid == pid && self.wants.covers(wants) => o,
            other => {
                self.observation = other;
                self.inner.observe(pid, wants)
            }
        }
    }

    fn pgid(&mut self, pid: i32) -> Option<i32> {
        self.inner.pgid(pid)
    }

    fn exists(&mut self, pid: i32) -> bool {
        self.inner.exists(pid)
    }

    fn snapshot(&mut self, wants: Wants) -> Snapshot {
        self.inner.snapshot(wants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_iterates_exact_arguments() {
        let a = parse::parse_cmdline(b"sh\0-c\0echo a  b\0", 16, 1024, false);
        assert_eq!(a.args().collect::<Vec<_>>(), [&b"sh"[..], b"-c", b"echo a  b"]);
        assert_eq!(a.joined_lossy(), "sh -c echo a  b");
        assert_eq!(Argv::default().args().count(), 0);
    }

    #[test]
    fn observations_round_trip_through_serde() {
        let o = Observation {
            stat: parse::parse_stat(b"7 (x) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0"),
            argv: Some(parse::parse_cmdline(b"x\0\xff\0", 8, 64, false)),
            ..Observation::gone(7, 5)
        };
        let json = serde_json::to_string(&o).unwrap();
        let back: Observation = serde_json::from_str(&json).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.start_ticks(), Some(99));
    }
}
