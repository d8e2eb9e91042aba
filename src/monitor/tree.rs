//! The tree view (`cnlink proc --tree`): forkstat's columns, with each process indented under its parent.
//!
//! What is shown, one line per record:
//!
//! - A process gets its place at its first line (whatever the event): one level below the nearest ancestor
//!   already placed in the view, or at the left margin when none is. That ancestor is looked for in the record
//!   (its parent; exec and exit records carry the ancestors), then in the monitor's process table as it stands
//!   after the batch. When that ancestor is not its parent (the parent never had a line: it was older than the
//!   monitor, filtered out, or its kind not shown), the line ends with `(parent PID NAME)`, so that a process
//!   seen first in the middle of the tree is still tied to it. Every later line of the process is at the same
//!   place.
//! - `fork`: the child's line (running its parent's program until it execs). `clone`: the new thread, one level
//!   below its process. `exec`, `exit`, `comm`, `uid`, `gid`, `sid`, `ptrce`, `core`: at the process's place;
//!   a thread's exit one level below it.
//! - When the kernel has moved a process to another parent (its parent exited: a double fork, a daemon), its
//!   next line ends with `(reparented to PID NAME)`; it keeps its place.
//!
//! Bounds: indentation stops growing at [`DEPTH_CAP`] levels (deeper lines show their depth as `└[N]`); places
//! are kept for [`MAX_PLACED`] processes (past it, those of processes the table no longer has go first), and an
//! exited process's place is kept until [`EXITED_KEPT`] later exits are drawn (its children may still have
//! lines to show).

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use cnlink::wire::{escape_into, EventData, ExitStatus};
use cnlink_procmon::{EntityId, LostEvents, ProcRecord, ProcessInfo, ProcessTable};

use super::human::{signal_name, Columns, Human, NameStyle, TextEnv};

/// Indentation levels drawn; deeper processes are drawn at this level with their depth written out.
pub(crate) const DEPTH_CAP: u16 = 24;

/// Processes whose place is remembered.
pub(crate) const MAX_PLACED: usize = 1 << 16;

/// Exited processes whose place is kept, for their children's lines.
pub(crate) const EXITED_KEPT: usize = 4096;

/// Where a process is drawn.
#[derive(Debug, Clone, Copy)]
struct Place {
    pid: i32,
    depth: u16,
    /// Its parent when it was last drawn (to tell a reparenting).
    parent: Option<EntityId>,
}

/// Formats records as an indented tree, in the text writer's columns (its clock, pid width and user names).
#[derive(Debug)]
pub(crate) struct TreeView {
    human: Human,
    places: HashMap<EntityId, Place>,
    exited: VecDeque<EntityId>,
}

impl TreeView {
    pub(crate) fn new(style: NameStyle, cols: Columns, env: TextEnv) -> TreeView {
        TreeView { human: Human::new(style, cols, env), places: HashMap::new(), exited: VecDeque::new() }
    }

    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        self.human.header_named(out, "Process tree");
    }

    /// The line of one record. `table` gives the ancestry of a process drawn for the first time whose record
    /// names no ancestor already drawn (a fork's names only the parent); without it, such a process starts at
    /// the left margin.
    pub(crate) fn event(&mut self, out: &mut Vec<u8>, rec: &ProcRecord, table: Option<&ProcessTable>) {
        let ev = &rec.event;
        let p = rec.process.as_deref();
        let (tid, _) = ev.data.subject().unwrap_or((0, 0));
        let (mut depth, mut note) = match p {
            Some(p) => self.place(p, rec, table),
            None => (0, Note::None),
        };
        let (kind, glyph) = match ev.data {
            EventData::Fork { child_pid, child_tgid, .. } if child_pid != child_tgid => ("clone", "┬"),
            EventData::Fork { .. } => ("fork", "┬"),
            EventData::Exec { .. } => ("exec", "→"),
            EventData::Exit { .. } => ("exit", "⇥"),
            EventData::Coredump { .. } => ("core", "☠"),
            EventData::Comm { .. } => ("comm", "↻"),
            EventData::Ptrace { .. } => ("ptrce", "⋯"),
            EventData::Uid { .. } => ("uid", "≈"),
            EventData::Gid { .. } => ("gid", "≈"),
            EventData::Sid { .. } => ("sid", "≈"),
            _ => ("?????", "?"),
        };
        let thread = rec.tid.is_some() && matches!(ev.data, EventData::Fork { .. } | EventData::Exit { .. });
        if thread {
            depth = depth.saturating_add(1);
            note = Note::None;
        }
        let mut info = String::new();
        let mut suffix = Vec::new();
        let mut lifetime = None;
        match ev.data {
            EventData::Fork { .. } if thread => info.push_str("thread"),
            EventData::Exit { exit_code, .. } => {
                info = match ExitStatus::from_raw(exit_code) {
                    ExitStatus::Exited(c) => c.to_string(),
                    ExitStatus::Signaled { signal, core_dumped } => {
                        format!("{}{}", signal_name(signal), if core_dumped { "*" } else { "" })
                    }
                    ExitStatus::Other(s) => format!("{s:#x}"),
                };
                lifetime = rec.lifetime_ns;
            }
            EventData::Comm { comm, .. } => {
                let new = comm.split(|&b| b == 0).next().unwrap_or_default();
                let old = rec.previous.as_ref().map(|o| o.program.name.as_bytes());
                suffix.extend_from_slice(b" (comm ");
                match old {
                    Some(o) if rec.tid.is_none() => escape_into(&mut suffix, o),
                    _ => suffix.push(b'?'),
                }
                suffix.extend_from_slice(b" -> ");
                escape_into(&mut suffix, new);
                suffix.push(b')');
            }
            EventData::Ptrace { tracer_tgid, .. } => {
                if tracer_tgid == 0 {
                    info.push_str("detach");
                } else {
                    info.push_str("attach");
                    let _ = write!(suffix, " (traced by {tracer_tgid})");
                }
            }
            EventData::Uid { ruid, euid, .. } => {
                let old = rec.previous.as_ref().and_then(|o| o.creds.ruid);
                let old = old.map_or_else(|| "?".into(), |u| u.to_string());
                let _ = write!(suffix, " (uid {old} -> {ruid}, euid {euid})");
            }
            EventData::Gid { rgid, egid, .. } => {
                let _ = write!(suffix, " (gid {rgid}, egid {egid})");
            }
            EventData::Sid { .. } => suffix.extend_from_slice(b" (new session)"),
            _ => {}
        }
        match note {
            Note::None => {}
            Note::Parent(pid, ref name) => {
                let _ = write!(suffix, " (parent {pid} ");
                suffix.extend_from_slice(name);
                suffix.push(b')');
            }
            Note::Reparented(pid, ref name) => {
                let _ = write!(suffix, " (reparented to {pid} ");
                suffix.extend_from_slice(name);
                suffix.push(b')');
            }
        }
        let pid = if tid > 0 { tid } else { p.map_or(0, |p| p.pid) };
        self.human.lead(out, ev.timestamp_ns, glyph, kind, pid, p);
        self.human.middle(out, &info, lifetime, p);
        indent(out, depth);
        self.human.name(out, p);
        out.extend_from_slice(&suffix);
        out.push(b'\n');
    }

    /// After each record drawn: an exited process's place starts its way out.
    pub(crate) fn forget(&mut self, rec: &ProcRecord) {
        if let (EventData::Exit { process_pid, process_tgid, .. }, Some(p)) = (rec.event.data, &rec.process) {
            if process_pid == process_tgid && self.places.contains_key(&p.entity_id) {
                self.exited.push_back(p.entity_id);
                while self.exited.len() > EXITED_KEPT {
                    if let Some(old) = self.exited.pop_front() {
                        self.places.remove(&old);
                    }
                }
            }
        }
    }

    /// A loss, never silent (as the flat view writes it).
    pub(crate) fn lost(&self, out: &mut Vec<u8>, l: &LostEvents) {
        self.human.lost(out, l);
    }

    /// The depth of `p`, placing it if this is its first line, and what its line must say about its parent.
    fn place(&mut self, p: &ProcessInfo, rec: &ProcRecord, table: Option<&ProcessTable>) -> (u16, Note) {
        let parent = rec.parent.as_deref();
        if let Some(place) = self.places.get_mut(&p.entity_id) {
            let depth = place.depth;
            let Some(q) = parent else { return (depth, Note::None) };
            let before = place.parent.replace(q.entity_id);
            if before.is_some_and(|b| b != q.entity_id) {
                return (depth, Note::Reparented(q.pid, escaped_name(q)));
            }
            return (depth, Note::None);
        }
        // The nearest placed ancestor: the parent, then the record's ancestors (as of its event), then the
        // table's ancestry (as of now) if the pid still leads to the process.
        let placed = |a: &ProcessInfo| self.places.get(&a.entity_id).map(|pl| (a.entity_id, pl.depth));
        let table = table.filter(|t| t.lookup(p.pid).is_some_and(|t| t.entity_id == p.entity_id));
        let found = parent
            .into_iter()
            .chain(rec.ancestors.iter().map(|a| &**a))
            .find_map(placed)
            .or_else(|| table.and_then(|t| t.ancestry(p.pid).find_map(|a| placed(a))));
        let depth = found.map_or(0, |(_, d)| d.saturating_add(1));
        let note = match (parent, found) {
            (Some(q), Some((under, _))) if under == q.entity_id => Note::None,
            (Some(q), _) => Note::Parent(q.pid, escaped_name(q)),
            (None, _) if p.parent_pid > 0 => Note::Parent(p.parent_pid, b"?".to_vec()),
            (None, _) => Note::None,
        };
        if self.places.len() >= MAX_PLACED {
            self.places.retain(|id, pl| table.and_then(|t| t.get(pl.pid)).is_some_and(|t| t.entity_id == *id));
            if self.places.len() >= MAX_PLACED {
                self.places.clear();
            }
            self.exited.retain(|id| self.places.contains_key(id));
        }
        self.places.insert(p.entity_id, Place { pid: p.pid, depth, parent: parent.map(|q| q.entity_id) });
        (depth, note)
    }
}

/// What a line says about the process's parent, after the name.
#[derive(Debug)]
enum Note {
    None,
    /// The process is not drawn under its parent (pid, escaped name).
    Parent(i32, Vec<u8>),
    /// The kernel moved it to another parent.
    Reparented(i32, Vec<u8>),
}

fn escaped_name(p: &ProcessInfo) -> Vec<u8> {
    let mut v = Vec::new();
    if p.program.name.is_empty() {
        v.push(b'?');
    } else {
        escape_into(&mut v, p.program.name.as_bytes());
    }
    v
}

/// Two spaces per level above the first, then `└ `; past [`DEPTH_CAP`], `└[N] `.
fn indent(out: &mut Vec<u8>, depth: u16) {
    if depth == 0 {
        return;
    }
    for _ in 1..depth.min(DEPTH_CAP) {
        out.extend_from_slice(b"  ");
    }
    if depth > DEPTH_CAP {
        let _ = write!(out, "└[{depth}] ");
    } else {
        out.extend_from_slice("└ ".as_bytes());
    }
}

#[cfg(test)]
mod tests;
