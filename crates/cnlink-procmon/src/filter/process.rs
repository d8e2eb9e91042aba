//! [`ProcFilter`]: processes by pid (with their descendants), name, user and process group.

use std::collections::HashSet;

use cnlink::wire::{EventData, EventMask};

use super::{FilterContext, Glob, RecordFilter};
use crate::table::process::ProcessInfo;
use crate::table::record::ProcRecord;
use crate::table::ProcessTable;

/// The filters of `cnlink proc` (`--pid [--descendants]`, `--name`, `--uid`, `-p`); every one given must
/// match.
///
/// - pids: the event's process (for a fork, the parent or the child) is one of them, or, with descendants,
///   one of their descendants, present (from the table at start) and future (followed through forks; a
///   descendant leaves the set when it exits, as its pid may be reused).
/// - names: a glob matches the process's name (`comm`), its `argv[0]`, or `argv[0]`'s last path component;
///   for events that change the process (comm, uid, ...) the process before the event counts too.
/// - uids: the real or effective uid (the new ones, for a uid event).
/// - process group: the group as the source says now (`setpgid` sends no event), else as last known.
#[derive(Debug, Clone, Default)]
pub struct ProcFilter {
    pids: HashSet<i32>,
    pid_filter: bool,
    descendants: bool,
    names: Vec<Glob>,
    uids: Vec<u32>,
    pgrp: Option<i32>,
}

impl ProcFilter {
    /// A filter that passes everything until conditions are added.
    pub fn new() -> ProcFilter {
        ProcFilter::default()
    }

    /// Only these processes (and with `descendants`, their descendants). An empty list adds no condition.
    pub fn pids(mut self, pids: &[i32], descendants: bool) -> ProcFilter {
        self.pids.extend(pids.iter().copied());
        self.pid_filter |= !pids.is_empty();
        self.descendants = descendants;
        self
    }

    /// Only processes whose name or program matches one of these globs.
    pub fn names<S: AsRef<str>>(mut self, patterns: &[S]) -> ProcFilter {
        self.names.extend(patterns.iter().map(|p| Glob::new(p.as_ref())));
        self
    }

    /// Only processes of these users (real or effective uid).
    pub fn uids(mut self, uids: &[u32]) -> ProcFilter {
        self.uids.extend_from_slice(uids);
        self
    }

    /// Only processes in this process group.
    pub fn pgrp(mut self, pgrp: i32) -> ProcFilter {
        self.pgrp = Some(pgrp);
        self
    }

    /// True when no condition is set.
    pub fn is_empty(&self) -> bool {
        !self.pid_filter && self.names.is_empty() && self.uids.is_empty() && self.pgrp.is_none()
    }

    fn tracks_descendants(&self) -> bool {
        self.pid_filter && self.descendants
    }

    fn name_matches(&self, p: &ProcessInfo) -> bool {
        let comm = p.program.name.to_str_lossy();
        let argv0 = p.program.argv.as_ref().and_then(|a| a.args().next()).map(String::from_utf8_lossy);
        let argv0 = argv0.as_deref().unwrap_or("");
        let base = argv0.rsplit('/').next().unwrap_or(argv0);
        self.names.iter().any(|g| g.matches(&comm) || g.matches(base) || g.matches(argv0))
    }
}

/// The process an event is about (the child, for a fork).
fn subject(data: &EventData) -> i32 {
    data.subject().map_or(0, |(_, tgid)| tgid)
}

impl RecordFilter for ProcFilter {
    fn start(&mut self, table: &ProcessTable) {
        if !self.tracks_descendants() {
            return;
        }
        let parents: Vec<(i32, i32)> = table.iter().map(|p| (p.pid, p.parent_pid)).collect();
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

    fn needs(&self) -> EventMask {
        if self.tracks_descendants() {
            EventMask::FORK | EventMask::EXIT
        } else {
            EventMask::NONE
        }
    }

    fn before(&mut self, rec: &ProcRecord, _cx: &mut FilterContext<'_>) {
        if let EventData::Fork { parent_tgid, child_pid, child_tgid, .. } = rec.event.data {
            if self.tracks_descendants() && child_pid == child_tgid && self.pids.contains(&parent_tgid) {
                self.pids.insert(child_tgid);
            }
        }
    }

    fn matches(&mut self, rec: &ProcRecord, cx: &mut FilterContext<'_>) -> bool {
        let data = &rec.event.data;
        if self.pid_filter {
            let hit = match *data {
                EventData::Fork { parent_tgid, child_tgid, .. } => {
                    self.pids.contains(&parent_tgid) || self.pids.contains(&child_tgid)
                }
                _ => self.pids.contains(&subject(data)),
            };
            if !hit {
                return false;
            }
        }
        if !self.names.is_empty() {
            let now = rec.process.as_deref().is_some_and(|p| self.name_matches(p));
            if !now && !rec.previous.as_deref().is_some_and(|p| self.name_matches(p)) {
                return false;
            }
        }
        if !self.uids.is_empty() {
            let uids = match *data {
                EventData::Uid { ruid, euid, .. } => [Some(ruid), Some(euid)],
                _ => {
                    let c = rec.process.as_ref().map(|p| p.creds);
                    [c.and_then(|c| c.ruid), c.and_then(|c| c.euid)]
                }
            };
            if !uids.iter().flatten().any(|u| self.uids.contains(u)) {
                return false;
            }
        }
        if let Some(g) = self.pgrp {
            let pid = subject(data);
            let now = if pid > 0 { cx.source.pgid(pid) } else { None };
            if now.or(rec.process.as_ref().map(|p| p.pgid)) != Some(g) {
                return false;
            }
        }
        true
    }

    fn after(&mut self, rec: &ProcRecord, _cx: &mut FilterContext<'_>) {
        if let EventData::Exit { process_pid, process_tgid, .. } = rec.event.data {
            if self.tracks_descendants() && process_pid == process_tgid {
                self.pids.remove(&process_tgid);
            }
        }
    }
}
