//! The tree view (`cnlink proc --tree`): forkstat's columns, with each process indented under its parent.
//!
//! What is shown, one line per record:
//!
//! - A process gets its place at its first line (whatever the event): one level below the nearest ancestor
//!   already placed in the view, or at the left margin when none is. When that ancestor is not its parent (the
//!   parent never had a line: it was older than the monitor, filtered out, or its kind not shown), the line
//!   ends with `(parent PID NAME)`, so that a process seen first in the middle of the tree is still tied to
//!   it. Every later line of the process is at the same place.
//! - `fork`: the child's line (running its parent's program until it execs). `clone`: the new thread, one level
//!   below its process. `exec`, `exit`, `comm`, `uid`, `gid`, `sid`, `ptrce`, `core`: at the process's place;
//!   a thread's exit one level below it.
//! - When the kernel has moved a process to another parent (its parent exited: a double fork, a daemon), its
//!   next line ends with `(reparented to PID NAME)`; it keeps its place.
//!
//! Bounds: indentation stops growing at [`DEPTH_CAP`] levels (deeper lines show their depth as `└[N]`); places
//! are kept for [`MAX_PLACED`] processes, and an exited process's place is kept until [`EXITED_KEPT`] later
//! exits (its children may still have lines to show).

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use cnlink::proc::Loss;
use cnlink::wire::{escape_into, EventData, ExitStatus};
use cnlink_procmon::{EntityId, ProcRecord, ProcessInfo, ProcessTable};

use super::human::{local_offset_ns, signal_name, Columns, NameStyle};
use super::json::LostCause;
use super::procfs::tty_name;

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

/// Formats records as an indented tree.
#[derive(Debug)]
pub(crate) struct TreeView {
    style: NameStyle,
    cols: Columns,
    pid_width: usize,
    mono_to_local_ns: i128,
    clock: fn() -> i128,
    places: HashMap<EntityId, Place>,
    exited: VecDeque<EntityId>,
    users: HashMap<u32, Vec<u8>>,
}

impl TreeView {
    pub(crate) fn new(style: NameStyle, cols: Columns) -> TreeView {
        let pid_max =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok());
        TreeView::with(style, cols, local_offset_ns, pid_max.map_or(7, |m| m.to_string().len()).max(5))
    }

    /// A view whose monotonic-to-local offset comes from `clock`, with a PID column `pid_width` wide.
    pub(crate) fn with(style: NameStyle, cols: Columns, clock: fn() -> i128, pid_width: usize) -> TreeView {
        TreeView {
            style,
            cols,
            pid_width,
            mono_to_local_ns: clock(),
            clock,
            places: HashMap::new(),
            exited: VecDeque::new(),
            users: HashMap::new(),
        }
    }

    /// Recomputes the offset from kernel timestamps to local time; called once per batch.
    pub(crate) fn resync_clock(&mut self) {
        self.mono_to_local_ns = (self.clock)();
    }

    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "Time     {}Event {:>w$} ",
            if self.cols.glyphs { "  " } else { "" },
            "PID",
            w = self.pid_width
        );
        if self.cols.extra {
            let _ = write!(out, "{:>8} {:>8} {:<6} ", "UID", "EUID", "TTY");
        }
        let _ = write!(out, "Info    Duration ");
        if self.cols.cgroup {
            let _ = write!(out, "{:<24} ", "Cgroup");
        }
        let _ = writeln!(out, "Process tree");
    }

    /// The line of one record. `table` (after the record's event) gives the ancestry of processes whose record
    /// carries none (forks, changes); without it, those are placed by their parent alone.
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

        self.time(out, ev.timestamp_ns);
        if self.cols.glyphs {
            let _ = write!(out, "{glyph} ");
        }
        let pid = if tid > 0 { tid } else { p.map_or(0, |p| p.pid) };
        let _ = write!(out, "{kind:<5} {pid:>w$} ", w = self.pid_width);
        if self.cols.extra {
            let (ruid, euid) = p.map_or((None, None), |p| (p.creds.ruid, p.creds.euid));
            let tty = p.map_or_else(|| "?".into(), |p| tty_name(p.tty_nr as u32));
            self.user(out, ruid);
            self.user(out, euid);
            let _ = write!(out, "{tty:<6} ");
        }
        let dur = lifetime.map(|l| format!("{:.3}s", l as f64 / 1e9)).unwrap_or_default();
        let _ = write!(out, "{info:<7} {dur:>8} ");
        if self.cols.cgroup {
            let mut cg = Vec::new();
            escape_into(&mut cg, p.and_then(|p| p.cgroup.as_ref()).map_or(&b""[..], |c| c.path.as_bytes()));
            let _ = write!(out, "{:<24} ", String::from_utf8_lossy(&cg));
        }
        indent(out, depth);
        self.name(out, p);
        out.extend_from_slice(&suffix);
        out.push(b'\n');
    }

    /// Every record, shown or not: an exited process's place starts its way out.
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
    pub(crate) fn lost(&self, out: &mut Vec<u8>, loss: Loss, cause: LostCause, now_ns: u64) {
        self.time(out, now_ns);
        if self.cols.glyphs {
            out.extend_from_slice("! ".as_bytes());
        }
        let _ = write!(out, "{:<5} {:>w$} ", "lost", "-", w = self.pid_width);
        let _ = match loss {
            Loss::Exact(n) => write!(out, "{n}"),
            Loss::AtLeast(n) => write!(out, "at least {n}"),
            Loss::Unknown => write!(out, "?"),
        };
        let _ = writeln!(out, " events lost ({})", cause.name());
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
        // The nearest placed ancestor: the parent, then the table's ancestry (or the record's).
        let table = table.filter(|t| t.lookup(p.pid).is_some_and(|t| t.entity_id == p.entity_id));
        let found = if let Some(table) = table {
            table.ancestry(p.pid).find_map(|a| self.places.get(&a.entity_id).map(|pl| (a.entity_id, pl.depth)))
        } else {
            parent
                .into_iter()
                .chain(rec.ancestors.iter().map(|a| &**a))
                .find_map(|a| self.places.get(&a.entity_id).map(|pl| (a.entity_id, pl.depth)))
        };
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

    fn time(&self, out: &mut Vec<u8>, ts: u64) {
        let local = (ts as i128 + self.mono_to_local_ns).max(0) / 1_000_000_000;
        let day = (local % 86_400) as u32;
        let _ = write!(out, "{:02}:{:02}:{:02} ", day / 3600, day / 60 % 60, day % 60);
    }

    fn user(&mut self, out: &mut Vec<u8>, uid: Option<u32>) {
        let Some(uid) = uid else {
            let _ = write!(out, "{:>8} ", "?");
            return;
        };
        if self.users.len() >= 4096 && !self.users.contains_key(&uid) {
            self.users.clear();
        }
        let name = self.users.entry(uid).or_insert_with(|| match crate::sys::user_name(uid) {
            Some(n) => {
                let mut e = Vec::new();
                escape_into(&mut e, &n);
                e
            }
            None => uid.to_string().into_bytes(),
        });
        let _ = write!(out, "{:>8} ", String::from_utf8_lossy(name));
    }

    /// The process's name as the options ask: the command line, the program only (`-s`), without its
    /// directory (`-d`), or the task name (`-c`); a kernel thread's in brackets.
    fn name(&self, out: &mut Vec<u8>, p: Option<&ProcessInfo>) {
        let Some(p) = p else {
            out.extend_from_slice(b"<unknown>");
            return;
        };
        let prog = &p.program;
        if p.kthread {
            out.push(b'[');
            escape_into(out, prog.name.as_bytes());
            out.push(b']');
            return;
        }
        let argv = prog.argv.as_deref().filter(|a| a.count > 0);
        let Some(argv) = argv.filter(|_| !self.style.comm) else {
            if prog.name.is_empty() {
                out.extend_from_slice(b"<unknown>");
            } else {
                escape_into(out, prog.name.as_bytes());
            }
            return;
        };
        for (i, a) in argv.args().enumerate() {
            if i == 0 {
                let a = if self.style.strip_dir { a.rsplit(|&b| b == b'/').next().unwrap_or(a) } else { a };
                escape_into(out, a);
                if self.style.short {
                    return;
                }
            } else {
                out.push(b' ');
                escape_into(out, a);
            }
        }
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
