//! What `/proc/PID` says about a process, as plain data ([`Observation`]), and where it comes from
//! ([`ProcSource`]): the live `/proc` ([`LiveProc`]) or anything that replays recorded observations.
//!
//! An observation is read in this order: `cmdline` (first: a short-lived program loses it first), `stat`,
//! `exe`, `cwd`, `status`, `cgroup`, `ns/pid`, `ns/mnt`, all through one `/proc/PID` directory handle (so that
//! every file is the same process's), then `/proc/PID/stat` once more by path: its start time tells whether the
//! pid still names the process that was read (and its name whether it exec'd meanwhile: then the whole reading
//! is done once more, so that the program's fields are one program's; an exec in the microseconds between
//! `cmdline` and the first `stat` goes unseen). The result carries an [`EnrichStatus`]:
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
    /// `stat`, `cmdline` and `exe`: what names a program, and what an exec changes.
    pub const PROGRAM: Wants = Wants { program: true, ..Wants::STAT };

    /// What `other` wants beyond these.
    pub fn beyond(self, other: Wants) -> Wants {
        Wants {
            program: other.program && !self.program,
            cwd: other.cwd && !self.cwd,
            status: other.status && !self.status,
            cgroup: other.cgroup && !self.cgroup,
            namespaces: other.namespaces && !self.namespaces,
        }
    }

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

    /// Adds what a later reading `rest` (of the files this one did not read) says, if it is of the same
    /// process (the same start time); otherwise those files stay unread and the status says so.
    pub fn complete_with(&mut self, rest: Observation) {
        let same = rest.start_ticks().is_some() && rest.start_ticks() == self.start_ticks();
        if same {
            self.cwd = self.cwd.take().or(rest.cwd);
            self.status_fields = self.status_fields.take().or(rest.status_fields);
            self.cgroup = self.cgroup.take().or(rest.cgroup);
            self.pid_ns = self.pid_ns.or(rest.pid_ns);
            self.mnt_ns = self.mnt_ns.or(rest.mnt_ns);
        }
        let rest_ok = same && rest.status == EnrichStatus::Ok;
        if self.status == EnrichStatus::Ok && !rest_ok {
            self.status = EnrichStatus::Partial;
        }
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
/// arrived) and everything else from `inner`. When the earlier reading holds fewer files than asked for, the
/// others are read from `inner` now and added if they are the same process's ([`Observation::complete_with`]).
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
            Some(mut o) if o.pid == pid && o.stat.is_some() => {
                o.complete_with(self.inner.observe(pid, self.wants.beyond(wants)));
                o
            }
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

    /// A process read with `wants` (a fake: `stat` and whatever else is asked).
    fn read(pid: i32, start: u64, wants: Wants) -> Observation {
        let stat = format!("{pid} (x) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0");
        Observation {
            status: EnrichStatus::Ok,
            stat: parse::parse_stat(stat.as_bytes()),
            argv: wants.program.then(|| parse::parse_cmdline(b"x\0", 8, 64, false)),
            cwd: wants.cwd.then(|| PathRead { path: b"/".to_vec(), truncated: false }),
            pid_ns: wants.namespaces.then_some(4),
            ..Observation::gone(pid, 0)
        }
    }

    /// A `/proc` with one process, counting reads.
    struct One(Observation, Vec<Wants>);

    impl ProcSource for One {
        fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
            self.1.push(wants);
            if pid == self.0.pid {
                read(pid, self.0.start_ticks().unwrap(), wants)
            } else {
                Observation::gone(pid, 0)
            }
        }
        fn exists(&mut self, _: i32) -> bool {
            true
        }
        fn snapshot(&mut self, _: Wants) -> Snapshot {
            Snapshot { ticks_per_second: 100, processes: Vec::new() }
        }
    }

    #[test]
    fn a_prefetched_program_is_completed_from_the_same_process_only() {
        let early = read(7, 50, Wants::PROGRAM);
        // The same process: the rest is read now and added.
        let mut live = One(read(7, 50, Wants::ALL), Vec::new());
        let o = Prefetched { observation: Some(early.clone()), wants: Wants::PROGRAM, inner: &mut live }
            .observe(7, Wants::ALL);
        assert_eq!((o.status, o.argv.is_some(), o.cwd.is_some(), o.pid_ns), (EnrichStatus::Ok, true, true, Some(4)));
        assert_eq!(live.1, [Wants::PROGRAM.beyond(Wants::ALL)]);
        assert!(!live.1[0].program, "what was read early is not read again");
        // The pid names another process now: nothing of it is added, and the reading is partial.
        let mut other = One(read(7, 90, Wants::ALL), Vec::new());
        let o = Prefetched { observation: Some(early.clone()), wants: Wants::PROGRAM, inner: &mut other }
            .observe(7, Wants::ALL);
        assert_eq!((o.status, o.cwd.is_none(), o.start_ticks()), (EnrichStatus::Partial, true, Some(50)));
        // What it covers is handed out as it is, once; another pid is read live.
        let mut live = One(read(7, 50, Wants::ALL), Vec::new());
        let mut p = Prefetched { observation: Some(early), wants: Wants::PROGRAM, inner: &mut live };
        assert_eq!(p.observe(7, Wants::STAT).argv.as_ref().map(|a| a.count), Some(1));
        assert_eq!(p.observe(8, Wants::STAT).status, EnrichStatus::Gone);
        assert_eq!(live.1, [Wants::STAT]);
        assert!(Wants::ALL.covers(Wants::PROGRAM) && !Wants::PROGRAM.covers(Wants::ALL));
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
