//! What the table knows about one process: [`ProcessInfo`], an immutable value shared with `Arc` and replaced
//! (not changed) when the process execs, renames itself or changes credentials.

use std::sync::Arc;

use crate::container::CgroupInfo;
use crate::identity::{EntityId, EntityIdSource};
use crate::procfs::{Argv, EnrichStatus};
use crate::BStr;

/// The program a process runs: set by an exec (or the snapshot), inherited by a fork.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Program {
    /// The task name (`comm`); empty when unknown.
    pub name: BStr,
    /// The arguments; `None` when unknown (the process was gone, or a kernel thread).
    pub argv: Option<Arc<Argv>>,
    /// The executable.
    pub exe: Option<ExeInfo>,
    /// `CLOCK_MONOTONIC` time of the exec event that started it; `None` when it was found in the snapshot.
    pub exec_ns: Option<u64>,
}

/// The executable a process runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExeInfo {
    /// The path (interned).
    pub path: BStr,
    /// The file was unlinked after the exec (always set for memfds, as the kernel marks them).
    pub deleted: bool,
    /// The program runs from a memfd.
    pub memfd: bool,
    /// The path was cut at the limit.
    pub truncated: bool,
}

/// User and group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Creds {
    /// Real uid.
    pub ruid: Option<u32>,
    /// Effective uid.
    pub euid: Option<u32>,
    /// Real gid.
    pub rgid: Option<u32>,
    /// Effective gid.
    pub egid: Option<u32>,
}

/// The namespaces a process lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Namespaces {
    /// Inode of its pid namespace.
    pub pid_ns: Option<u64>,
    /// Inode of its mount namespace.
    pub mnt_ns: Option<u64>,
    /// Its pid in each pid namespace, outermost first (`NSpid`); `None` until read (a forked child's is known
    /// only after it is read at exec).
    pub nspid: Option<Box<[i32]>>,
}

impl Namespaces {
    /// The pid inside its own (innermost) namespace.
    pub fn inner_pid(&self) -> Option<i32> {
        self.nspid.as_deref().and_then(|p| p.last().copied())
    }

    /// It runs in a pid namespace below the reader's.
    pub fn nested(&self) -> bool {
        self.nspid.as_deref().is_some_and(|p| p.len() > 1)
    }
}

/// Why a process exists: the kind of its entry leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryLeaderKind {
    /// A login session: a session leader with a controlling terminal (a shell from sshd, login, a terminal
    /// emulator, tmux), a child of sshd, login or telnetd, or the first process of a `session-N.scope`.
    Login,
    /// A job started by cron, anacron or atd.
    Cron,
    /// The first process of a systemd service (its cgroup unit differs from its parent's).
    SystemdUnit,
    /// A container's first process: the init of a nested pid namespace, or the first process in a container's
    /// cgroup.
    Container,
    /// pid 1.
    Init,
    /// A kernel thread, or a process a kernel thread started (usermode helpers).
    Kthread,
    /// The ancestry ends (unknown parent, or deeper than the walk goes) before any rule matched.
    Unknown,
}

impl EntryLeaderKind {
    /// `login`, `cron`, `systemd_unit`, `container`, `init`, `kthread` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            EntryLeaderKind::Login => "login",
            EntryLeaderKind::Cron => "cron",
            EntryLeaderKind::SystemdUnit => "systemd_unit",
            EntryLeaderKind::Container => "container",
            EntryLeaderKind::Init => "init",
            EntryLeaderKind::Kthread => "kthread",
            EntryLeaderKind::Unknown => "unknown",
        }
    }
}

/// The nearest ancestor (or the process itself) that explains why a process exists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryLeader {
    /// Its pid.
    pub pid: i32,
    /// Its entity id.
    pub entity_id: EntityId,
    /// Its name when it was chosen.
    pub name: BStr,
    /// Why it is the leader.
    pub kind: EntryLeaderKind,
}

/// What the table knows about a process (a thread group), as of one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id (thread group id) in the initial pid namespace.
    pub pid: i32,
    /// Identity that survives pid reuse.
    pub entity_id: EntityId,
    /// How `entity_id` was derived.
    pub entity_id_source: EntityIdSource,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22), when read.
    pub start_ticks: Option<u64>,
    /// `CLOCK_MONOTONIC` start in ns: the fork event's timestamp, or the start ticks converted.
    pub start_ns: Option<u64>,
    /// Parent pid, as last known (the fork, `/proc`, or an exit event after reparenting).
    pub parent_pid: i32,
    /// The parent's entity id, when the parent is known.
    pub parent_entity_id: Option<EntityId>,
    /// The program it runs.
    pub program: Program,
    /// Earlier programs of this process, newest first (bounded; see [`ProcessInfo::exec_count`]).
    pub exec_history: Arc<[Program]>,
    /// Execs seen since the process was first known (the history may hold fewer).
    pub exec_count: u32,
    /// Working directory.
    pub cwd: Option<BStr>,
    /// Credentials.
    pub creds: Creds,
    /// Process group.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Controlling terminal (`tty_nr`), 0 for none.
    pub tty_nr: i32,
    /// A kernel thread.
    pub kthread: bool,
    /// Cgroups, classified (shared by every process with the same cgroup file).
    pub cgroup: Option<Arc<CgroupInfo>>,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Why it exists (set at exec and in the snapshot, inherited at fork).
    pub entry_leader: Option<Arc<EntryLeader>>,
    /// How trustworthy the fields above are.
    pub status: EnrichStatus,
    /// Some field was cut at its limit.
    pub truncated: bool,
}

impl ProcessInfo {
    /// A process known only by its pid and id.
    pub(crate) fn bare(pid: i32, entity_id: EntityId, entity_id_source: EntityIdSource) -> ProcessInfo {
        ProcessInfo {
            pid,
            entity_id,
            entity_id_source,
            start_ticks: None,
            start_ns: None,
            parent_pid: 0,
            parent_entity_id: None,
            program: Program::default(),
            exec_history: Arc::from(Vec::new()),
            exec_count: 0,
            cwd: None,
            creds: Creds::default(),
            pgid: 0,
            sid: 0,
            tty_nr: 0,
            kthread: false,
            cgroup: None,
            namespaces: Namespaces::default(),
            entry_leader: None,
            status: EnrichStatus::Gone,
            truncated: false,
        }
    }

    /// The container it runs in, if any.
    pub fn container(&self) -> Option<&crate::container::Container> {
        self.cgroup.as_ref()?.class.container.as_ref()
    }

    /// The systemd unit its cgroup names, if any.
    pub fn unit(&self) -> Option<&str> {
        self.cgroup.as_ref()?.class.systemd.as_ref()?.unit.as_deref()
    }
}
