//! Which events to show: the event kinds (`-e`), and which processes (pid with descendants, name, uid, group).

use std::collections::HashSet;

use cnlink::wire::{EventData, EventMask};

use super::enrich::{Cache, ProcInfo};

/// The event kinds chosen with `-e`: the kernel's mask, with `fork` (new processes) and `clone` (new threads)
/// told apart, as forkstat does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    /// In the kernel's terms (`NONZERO_EXIT` included); `FORK` when either forks or clones are wanted.
    pub(crate) mask: EventMask,
    /// Show process creation.
    pub(crate) fork: bool,
    /// Show thread creation.
    pub(crate) clone: bool,
}

impl Selection {
    pub(crate) const ALL: Selection = Selection { mask: EventMask::ALL, fork: true, clone: true };

    /// Parses a comma-separated list of forkstat's names and ours.
    pub(crate) fn parse(list: &str) -> Result<Selection, String> {
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
                other => {
                    return Err(format!(
                        "unknown event {other:?}: use fork, clone, exec, exit, nonzero-exit, coredump, comm, \
                         ptrace, uid, gid, sid or all"
                    ))
                }
            };
            s.mask |= m;
        }
        if s.mask.is_empty() {
            return Err("empty event list".into());
        }
        if s.mask.0 & cnlink::wire::PROC_EVENT_ALL == cnlink::wire::PROC_EVENT_ALL {
            s.mask = EventMask::ALL;
        }
        Ok(s)
    }

    /// Whether an event of this kind is to be shown.
    pub(crate) fn admits(&self, data: &EventData) -> bool {
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

/// A shell glob with `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob(Vec<char>);

impl Glob {
    pub(crate) fn new(p: &str) -> Self {
        Glob(p.chars().collect())
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        let (p, mut pi, mut si) = (&self.0, 0, 0);
        let (mut star, mut mark) = (None, 0);
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = si;
                pi += 1;
            } else if let Some(st) = star {
                pi = st + 1;
                mark += 1;
                si = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

/// The process filters; all given ones must match.
#[derive(Debug, Default)]
pub(crate) struct ProcFilter {
    pids: HashSet<i32>,
    pid_filter: bool,
    descendants: bool,
    names: Vec<Glob>,
    uids: Vec<u32>,
    pgrp: Option<i32>,
}

impl ProcFilter {
    pub(crate) fn new(pids: &[i32], descendants: bool, names: &[String], uids: &[u32], pgrp: Option<i32>) -> Self {
        ProcFilter {
            pids: pids.iter().copied().collect(),
            pid_filter: !pids.is_empty(),
            descendants,
            names: names.iter().map(|n| Glob::new(n)).collect(),
            uids: uids.to_vec(),
            pgrp,
        }
    }

    /// Whether any filter is set.
    pub(crate) fn active(&self) -> bool {
        self.pid_filter || !self.names.is_empty() || !self.uids.is_empty() || self.pgrp.is_some()
    }

    /// Whether a process group is asked for (the group is then read live, as `setpgid` sends no event).
    pub(crate) fn by_pgrp(&self) -> bool {
        self.pgrp.is_some()
    }

    /// Whether the filter needs fork and exit events to follow descendants.
    pub(crate) fn tracks_descendants(&self) -> bool {
        self.pid_filter && self.descendants
    }

    /// Adds the descendants that already exist, from the snapshot.
    pub(crate) fn start(&mut self, cache: &Cache) {
        if !self.tracks_descendants() {
            return;
        }
        let parents: Vec<(i32, i32)> = cache.iter().map(|(pid, i)| (pid, i.ppid)).collect();
        loop {
            let before = self.pids.len();
            for &(pid, ppid) in &parents {
                if self.pids.contains(&ppid) {
                    self.pids.insert(pid);
                }
            }
            if self.pids.len() == before {
                break;
            }
        }
    }

    /// Follows a new process into the set when its parent is in it.
    pub(crate) fn on_fork(&mut self, parent_tgid: i32, child_pid: i32, child_tgid: i32) {
        if self.tracks_descendants() && child_pid == child_tgid && self.pids.contains(&parent_tgid) {
            self.pids.insert(child_tgid);
        }
    }

    /// Forgets a followed descendant when it exits (its pid may be reused).
    pub(crate) fn on_exit(&mut self, pid: i32, tgid: i32) {
        if self.tracks_descendants() && pid == tgid {
            self.pids.remove(&tgid);
        }
    }

    /// Whether the event passes: `info` is the subject's cache entry (the child's for a fork).
    pub(crate) fn matches(&self, data: &EventData, info: Option<&ProcInfo>) -> bool {
        if self.pid_filter {
            let hit = match *data {
                EventData::Fork { parent_tgid, child_tgid, .. } => {
                    self.pids.contains(&parent_tgid) || self.pids.contains(&child_tgid)
                }
                _ => data.subject().is_some_and(|(_, tgid)| self.pids.contains(&tgid)),
            };
            if !hit {
                return false;
            }
        }
        if !self.names.is_empty() {
            let Some(i) = info else { return false };
            let argv0 = i.cmdline.split(' ').next().unwrap_or("");
            let base = argv0.rsplit('/').next().unwrap_or(argv0);
            if !self.names.iter().any(|g| g.matches(&i.comm) || g.matches(base) || g.matches(argv0)) {
                return false;
            }
        }
        if !self.uids.is_empty() {
            let event_uids = match *data {
                EventData::Uid { ruid, euid, .. } => [Some(ruid), Some(euid)],
                _ => [info.and_then(|i| i.uid), info.and_then(|i| i.euid)],
            };
            if !event_uids.iter().flatten().any(|u| self.uids.contains(u)) {
                return false;
            }
        }
        if let Some(g) = self.pgrp {
            if info.map(|i| i.pgid) != Some(g) {
                return false;
            }
        }
        true
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
        assert!(Selection::parse("bogus").is_err());
        assert!(Selection::parse("").is_err());
    }

    #[test]
    fn globs() {
        assert!(Glob::new("ba*").matches("bash"));
        assert!(Glob::new("*sh").matches("bash"));
        assert!(Glob::new("b?sh").matches("bash"));
        assert!(Glob::new("bash").matches("bash"));
        assert!(!Glob::new("bash").matches("bashx"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
    }

    #[test]
    fn descendants_are_followed() {
        let mut f = ProcFilter::new(&[100], true, &[], &[], None);
        f.on_fork(100, 101, 101);
        f.on_fork(101, 102, 102);
        f.on_fork(5, 6, 6);
        let exec = |p| EventData::Exec { process_pid: p, process_tgid: p };
        assert!(f.matches(&exec(102), None));
        assert!(!f.matches(&exec(6), None));
        f.on_exit(102, 102);
        assert!(!f.matches(&exec(102), None));
    }

    #[test]
    fn name_uid_and_group() {
        let info = ProcInfo {
            comm: "sleep".into(),
            cmdline: "/bin/sleep 5".into(),
            uid: Some(1000),
            pgid: 7,
            ..Default::default()
        };
        let ev = EventData::Exec { process_pid: 1, process_tgid: 1 };
        assert!(ProcFilter::new(&[], false, &["sle*".into()], &[], None).matches(&ev, Some(&info)));
        assert!(ProcFilter::new(&[], false, &["/bin/sleep".into()], &[], None).matches(&ev, Some(&info)));
        assert!(!ProcFilter::new(&[], false, &["bash".into()], &[], None).matches(&ev, Some(&info)));
        assert!(ProcFilter::new(&[], false, &[], &[1000], None).matches(&ev, Some(&info)));
        assert!(!ProcFilter::new(&[], false, &[], &[0], None).matches(&ev, Some(&info)));
        assert!(ProcFilter::new(&[], false, &[], &[], Some(7)).matches(&ev, Some(&info)));
        assert!(!ProcFilter::new(&[], false, &[], &[], Some(8)).matches(&ev, None));
    }
}
