//! Which events to show: [`EventKind`] (the kernel's kinds, with process and thread creation told apart, as
//! forkstat does) and [`Selection`], a set of them parsed from forkstat's names and ours.

use cnlink::wire::{EventData, EventMask, PROC_EVENT_ALL};

/// The kind of a proc event, with process creation (`fork`) and thread creation (`clone`) told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A new process.
    Fork,
    /// A new thread.
    Clone,
    /// A successful exec.
    Exec,
    /// A task exited.
    Exit,
    /// A core dump.
    Coredump,
    /// A task renamed itself.
    Comm,
    /// A tracer attached or detached.
    Ptrace,
    /// The uids changed.
    Uid,
    /// The gids changed.
    Gid,
    /// A new session (`setsid`).
    Sid,
    /// Anything else (acks, kinds newer than cnlink).
    Other,
}

impl EventKind {
    /// How many kinds there are (the length of per-kind counter arrays).
    pub const COUNT: usize = 11;

    /// Every kind, in [`EventKind::index`] order.
    pub const ALL: [EventKind; EventKind::COUNT] = [
        EventKind::Fork,
        EventKind::Clone,
        EventKind::Exec,
        EventKind::Exit,
        EventKind::Coredump,
        EventKind::Comm,
        EventKind::Ptrace,
        EventKind::Uid,
        EventKind::Gid,
        EventKind::Sid,
        EventKind::Other,
    ];

    /// The kind of an event.
    pub fn of(data: &EventData) -> EventKind {
        match *data {
            EventData::Fork { child_pid, child_tgid, .. } if child_pid != child_tgid => EventKind::Clone,
            EventData::Fork { .. } => EventKind::Fork,
            EventData::Exec { .. } => EventKind::Exec,
            EventData::Exit { .. } => EventKind::Exit,
            EventData::Coredump { .. } => EventKind::Coredump,
            EventData::Comm { .. } => EventKind::Comm,
            EventData::Ptrace { .. } => EventKind::Ptrace,
            EventData::Uid { .. } => EventKind::Uid,
            EventData::Gid { .. } => EventKind::Gid,
            EventData::Sid { .. } => EventKind::Sid,
            _ => EventKind::Other,
        }
    }

    /// Every kind's name, in [`EventKind::index`] order.
    pub const NAMES: [&'static str; EventKind::COUNT] =
        ["fork", "clone", "exec", "exit", "coredump", "comm", "ptrace", "uid", "gid", "sid", "other"];

    /// `fork`, `clone`, `exec`, `exit`, `coredump`, `comm`, `ptrace`, `uid`, `gid`, `sid` or `other`.
    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Fork => "fork",
            EventKind::Clone => "clone",
            EventKind::Exec => "exec",
            EventKind::Exit => "exit",
            EventKind::Coredump => "coredump",
            EventKind::Comm => "comm",
            EventKind::Ptrace => "ptrace",
            EventKind::Uid => "uid",
            EventKind::Gid => "gid",
            EventKind::Sid => "sid",
            EventKind::Other => "other",
        }
    }

    /// The kind's position in [`EventKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// A list of event kinds that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// A name that is not an event kind.
    #[error(
        "unknown event {0:?}: use fork, clone, exec, exit, nonzero-exit, coredump, comm, ptrace, uid, gid, sid or all"
    )]
    Unknown(String),
    /// No kind at all.
    #[error("empty event list")]
    Empty,
}

/// The event kinds to show: the kernel's mask, with `fork` (new processes) and `clone` (new threads) told
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// In the kernel's terms (`NONZERO_EXIT` included); `FORK` when either forks or clones are wanted.
    pub mask: EventMask,
    /// Show process creation.
    pub fork: bool,
    /// Show thread creation.
    pub clone: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection::ALL
    }
}

impl Selection {
    /// Every event.
    pub const ALL: Selection = Selection { mask: EventMask::ALL, fork: true, clone: true };

    /// Parses a comma-separated list of forkstat's names and ours: `fork`, `clone` (or `thread`), `exec`,
    /// `exit`, `nonzero-exit`, `coredump` (or `core`), `comm`, `ptrace` (or `ptrce`), `uid`, `gid`, `sid`,
    /// `all`.
    pub fn parse(list: &str) -> Result<Selection, SelectionError> {
        let mut s = Selection { mask: EventMask::NONE, fork: false, clone: false };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let m = match name {
                "all" => return Ok(Selection::ALL),
                "fork" => {
                    s.fork = true;
                    EventMask::FORK
                }
                "clone" | "thread" => {
                    s.clone = true;
                    EventMask::FORK
                }
                "exec" => EventMask::EXEC,
                "exit" => EventMask::EXIT,
                "nonzero-exit" | "nonzeroexit" | "exitnonzero" => EventMask::NONZERO_EXIT,
                "core" | "coredump" => EventMask::COREDUMP,
                "comm" => EventMask::COMM,
                "ptrce" | "ptrace" => EventMask::PTRACE,
                "uid" => EventMask::UID,
                "gid" => EventMask::GID,
                "sid" => EventMask::SID,
                other => return Err(SelectionError::Unknown(other.to_owned())),
            };
            s.mask |= m;
        }
        if s.mask.is_empty() {
            return Err(SelectionError::Empty);
        }
        if s.mask.0 & PROC_EVENT_ALL == PROC_EVENT_ALL {
            s.mask = EventMask::ALL;
        }
        Ok(s)
    }

    /// Whether an event of this kind is to be shown.
    pub fn admits(&self, data: &EventData) -> bool {
        match *data {
            EventData::Fork { child_pid, child_tgid, .. } => {
                if child_pid == child_tgid {
                    self.fork
                } else {
                    self.clone
                }
            }
            EventData::Exit { exit_code, .. } => self.mask.admits(data.what(), exit_code),
            _ => self.mask.admits(data.what(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections() {
        let s = Selection::parse("fork,exit").unwrap();
        assert_eq!(s.mask, EventMask::FORK | EventMask::EXIT);
        assert!(s.fork && !s.clone);
        let thread = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 3, child_tgid: 1 };
        assert!(!s.admits(&thread));
        assert!(Selection::parse("clone").unwrap().admits(&thread));
        let nz = Selection::parse("nonzeroexit").unwrap();
        let exit = |c| EventData::Exit {
            process_pid: 1,
            process_tgid: 1,
            exit_code: c,
            exit_signal: 17,
            parent_pid: 0,
            parent_tgid: 0,
        };
        assert!(nz.admits(&exit(256)) && !nz.admits(&exit(0)));
        assert_eq!(Selection::parse("all").unwrap(), Selection::ALL);
        assert_eq!(Selection::parse("bogus"), Err(SelectionError::Unknown("bogus".into())));
        assert_eq!(Selection::parse(""), Err(SelectionError::Empty));
        // Every kernel kind but only processes: threads stay out.
        let procs = Selection::parse("fork,exec,exit,nonzero-exit,coredump,comm,ptrace,uid,gid,sid").unwrap();
        assert!(!procs.admits(&thread));
    }

    #[test]
    fn kinds_have_names_and_indices_in_order() {
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(k.name(), EventKind::NAMES[i]);
        }
        let thread = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 3, child_tgid: 1 };
        assert_eq!(EventKind::of(&thread).name(), "clone");
        assert_eq!(EventKind::of(&EventData::Ack { err: 0 }), EventKind::Other);
    }
}
