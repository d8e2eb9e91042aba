//! Filters that use the process tree: [`TreeFilter`] keeps or drops a [`ProcRecord`] by where its process sits
//! in the [`ProcessTable`] (below a given process or not), by its container and by its systemd unit. Exact, from
//! the table alone: no `/proc` walk.
//!
//! **Descendants.** A process *descends from* a root `P` when `P` is the process itself or one of its ancestors
//! in the table. A root is given as a pid (the live process with that pid when [`TreeFilter::start`] runs), an
//! [`EntityId`], or a name: a name names every process whose task name (`comm`), executable path or
//! executable file name equals it, whenever the filter looks at it (so processes that exec that program later
//! become roots too).
//!
//! Membership is decided once and then kept until the process exits: a process found descending from a root
//! (at its fork, or the first time the filter sees it) stays a descendant when its parent exits and the kernel
//! moves it to init or a subreaper, as a double-forked daemon does. So every line of a process's life is either
//! shown or not, and a process cannot leave the tree by reparenting itself. For this the filter must see
//! **every** record the table returns, in order, shown or not (and the subscription must include fork and exit
//! events): [`TreeFilter::admits`] follows the tree as it answers, and a [`crate::Monitor`] given the filter
//! ([`crate::MonitorBuilder::filter`]: it is a [`RecordFilter`]) shows it every record and subscribes to what it
//! needs.
//!
//! A record whose process the table could not identify (gone before it could be read, never seen) descends from
//! a root when the event names a parent that does (fork, exit and coredump events name one).
//!
//! **Containers and units.** `container` matches a process whose recognised container id starts with the given
//! hex digits (a full id or a prefix such as docker's 12-digit short id); `unit` matches a process whose
//! recognised systemd unit equals the name (or the name with `.service` appended), or whose cgroup path has a
//! component equal to it (a slice: `system.slice`, `user-1000.slice`). The cgroup is the one read when the
//! process was last read (at start, and at each exec; in a monitor, the receive thread reads it the moment the
//! exec arrives, so that a short-lived program is placed too): a process that moves itself to another cgroup is
//! seen there after its next exec.
//!
//! Every condition given must hold: descendants of some root, not descendants of any excluded root, in one of
//! the containers, in one of the units.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cnlink::wire::{EventData, EventMask};

use crate::filter::{FilterContext, RecordFilter, StartError};
use crate::identity::EntityId;
use crate::procfs::Wants;
use crate::table::process::ProcessInfo;
use crate::table::record::ProcRecord;
use crate::table::ProcessTable;
use crate::BStr;

/// A process named on the command line: a pid, an entity id or a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessRef {
    /// The live process with this pid when the filter starts.
    Pid(i32),
    /// The process with this entity id (32 hex digits).
    Entity(EntityId),
    /// Every process whose name, executable path or executable file name is this.
    Name(BStr),
}

impl fmt::Display for ProcessRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessRef::Pid(p) => write!(f, "pid {p}"),
            ProcessRef::Entity(e) => write!(f, "entity {e}"),
            ProcessRef::Name(n) => write!(f, "name {n}"),
        }
    }
}

/// A process reference that is empty or a pid that is not positive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a positive pid, an entity id (32 hex digits) nor a process name")]
pub struct BadProcessRef(pub String);

impl FromStr for ProcessRef {
    type Err = BadProcessRef;

    /// 32 hex digits: an entity id; other digits only: a pid; anything else: a name.
    fn from_str(s: &str) -> Result<Self, BadProcessRef> {
        let bad = || BadProcessRef(s.to_owned());
        if s.is_empty() {
            return Err(bad());
        }
        if s.len() != 32 && s.bytes().all(|b| b.is_ascii_digit()) {
            return match s.parse::<i32>() {
                Ok(p) if p > 0 => Ok(ProcessRef::Pid(p)),
                _ => Err(bad()),
            };
        }
        if let Ok(id) = s.parse::<EntityId>() {
            return Ok(ProcessRef::Entity(id));
        }
        Ok(ProcessRef::Name(BStr::from(s)))
    }
}

/// A pid root that names no live process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no process with pid {0}")]
pub struct NoSuchProcess(pub i32);

/// The processes below some roots, followed through forks (see the [module documentation](self)).
#[derive(Debug, Clone)]
struct Subtree {
    pids: Vec<i32>,
    names: Vec<BStr>,
    /// The roots given by pid (once resolved) and by entity id.
    roots: Vec<EntityId>,
    /// Processes found below a root: kept while they live, and for a while after they exit (their threads may
    /// still fork).
    members: HashSet<EntityId>,
    /// Members that exited, oldest first; they leave `members` when pushed out.
    exited: VecDeque<EntityId>,
}

/// Exited members kept (for late forks of their remaining threads).
const EXITED_KEPT: usize = 4096;

impl Subtree {
    fn new(roots: &[ProcessRef]) -> Subtree {
        let mut t = Subtree {
            pids: Vec::new(),
            names: Vec::new(),
            roots: Vec::new(),
            members: HashSet::new(),
            exited: VecDeque::new(),
        };
        for r in roots {
            match r {
                ProcessRef::Pid(p) => t.pids.push(*p),
                ProcessRef::Entity(e) => t.roots.push(*e),
                ProcessRef::Name(n) => t.names.push(n.clone()),
            }
        }
        t
    }

    fn start(&mut self, table: &ProcessTable) -> Result<(), NoSuchProcess> {
        for &pid in &self.pids {
            let p = table.get(pid).ok_or(NoSuchProcess(pid))?;
            self.roots.push(p.entity_id);
        }
        Ok(())
    }

    /// Whether `p` is a root by name.
    fn named(&self, p: &ProcessInfo) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let exe = p.program.exe.as_ref().map(|e| e.path.as_bytes());
        let file = exe.map(|e| e.rsplit(|&b| b == b'/').next().unwrap_or(e));
        self.names.iter().any(|n| {
            let n = n.as_bytes();
            p.program.name.as_bytes() == n || exe == Some(n) || file == Some(n)
        })
    }

    fn root_or_member(&self, p: &ProcessInfo) -> bool {
        self.members.contains(&p.entity_id) || self.roots.contains(&p.entity_id) || self.named(p)
    }

    /// Whether `p` (whose record is `rec`) descends from a root; remembers it if so.
    fn contains(&mut self, table: &ProcessTable, p: &Arc<ProcessInfo>, rec: &ProcRecord) -> bool {
        if self.root_or_member(p) {
            self.remember(p);
            return true;
        }
        // The table's ancestry of the process, if the pid still leads to it; else the record's.
        let in_table = table.lookup(p.pid).is_some_and(|t| t.entity_id == p.entity_id);
        let hit = if in_table {
            table.ancestry(p.pid).any(|a| self.root_or_member(a))
        } else if !rec.ancestors.is_empty() {
            rec.ancestors.iter().any(|a| self.root_or_member(a))
        } else {
            rec.parent.as_ref().is_some_and(|a| self.root_or_member(a))
        };
        if hit {
            self.remember(p);
        }
        hit
    }

    /// Whether the live process `pid` descends from a root.
    fn contains_pid(&self, table: &ProcessTable, pid: i32) -> bool {
        let Some(p) = table.get(pid) else { return false };
        self.root_or_member(p) || table.ancestry(pid).any(|a| self.root_or_member(a))
    }

    fn remember(&mut self, p: &ProcessInfo) {
        if self.members.len() >= MAX_MEMBERS && !self.members.contains(&p.entity_id) {
            self.members.clear();
            self.exited.clear();
        }
        self.members.insert(p.entity_id);
    }

    /// The process `id` exited: it leaves the members once [`EXITED_KEPT`] later exits have pushed it out.
    fn exited(&mut self, id: EntityId) {
        if !self.members.contains(&id) {
            return;
        }
        self.exited.push_back(id);
        while self.exited.len() > EXITED_KEPT {
            if let Some(old) = self.exited.pop_front() {
                self.members.remove(&old);
            }
        }
    }
}

/// The most members remembered; past it, they are all forgotten (and found again through the table when they
/// next appear, except those a reparenting moved away). Only a subtree of a million live processes reaches it.
const MAX_MEMBERS: usize = 1 << 20;

/// Keeps the records of some processes: by their place in the tree, their container and their unit. See the
/// [module documentation](self).
///
/// ```
/// use cnlink_procmon::{HostIdentity, ProcessTable, TableConfig, TreeFilter};
///
/// let table = ProcessTable::new(HostIdentity::new("", "boot"), TableConfig::default());
/// let mut f = TreeFilter::default().exclude_descendants_of(["sshd".parse().unwrap()]).unit("cron.service");
/// f.start(&table).unwrap();
/// assert!(f.is_active() && f.follows_tree());
/// ```
#[derive(Debug, Clone, Default)]
pub struct TreeFilter {
    include: Option<Subtree>,
    exclude: Option<Subtree>,
    containers: Vec<Box<str>>,
    units: Vec<Box<str>>,
    /// The last followed record: below an included root, below an excluded one.
    decided: (bool, bool),
}

impl TreeFilter {
    /// Keeps only processes that descend from one of `roots` (themselves included).
    pub fn descendants_of(mut self, roots: impl IntoIterator<Item = ProcessRef>) -> Self {
        let roots: Vec<ProcessRef> = roots.into_iter().collect();
        if !roots.is_empty() {
            self.include = Some(Subtree::new(&roots));
        }
        self
    }

    /// Drops processes that descend from one of `roots` (themselves included).
    pub fn exclude_descendants_of(mut self, roots: impl IntoIterator<Item = ProcessRef>) -> Self {
        let roots: Vec<ProcessRef> = roots.into_iter().collect();
        if !roots.is_empty() {
            self.exclude = Some(Subtree::new(&roots));
        }
        self
    }

    /// Keeps processes in a container whose id starts with `id` (case-insensitive hex); several calls: any.
    pub fn container(mut self, id: &str) -> Self {
        self.containers.push(id.to_ascii_lowercase().into());
        self
    }

    /// Keeps processes in the systemd unit or slice `name`; several calls: any.
    pub fn unit(mut self, name: &str) -> Self {
        self.units.push(name.into());
        self
    }

    /// Whether any condition is set.
    pub fn is_active(&self) -> bool {
        self.follows_tree() || !self.containers.is_empty() || !self.units.is_empty()
    }

    /// Whether the filter follows the tree, and so needs every fork and exit record.
    pub fn follows_tree(&self) -> bool {
        self.include.is_some() || self.exclude.is_some()
    }

    /// Resolves the pid roots against the table (seeded from the start-up snapshot): each must name a live
    /// process.
    pub fn start(&mut self, table: &ProcessTable) -> Result<(), NoSuchProcess> {
        for t in [&mut self.include, &mut self.exclude].into_iter().flatten() {
            t.start(table)?;
        }
        Ok(())
    }

    /// Whether `rec` passes. Call it for every record the table returns, in order, shown or not: it follows
    /// the tree (a fork's child joins its parent's subtree; an exited process is forgotten later). The same as
    /// [`follow`](Self::follow), [`matches`](Self::matches), then [`forget`](Self::forget).
    pub fn admits(&mut self, table: &ProcessTable, rec: &ProcRecord) -> bool {
        self.follow(table, rec);
        let pass = TreeFilter::matches(self, rec);
        self.forget(rec);
        pass
    }

    /// Follows the tree with one record (every record the table returns, in order, shown or not): decides
    /// whether its process descends from the roots, remembering it if so.
    pub fn follow(&mut self, table: &ProcessTable, rec: &ProcRecord) {
        let inside = |t: &mut Subtree| match &rec.process {
            Some(p) => t.contains(table, p, rec),
            None => named_parent(&rec.event.data).is_some_and(|ppid| t.contains_pid(table, ppid)),
        };
        self.decided = (self.include.as_mut().is_none_or(inside), self.exclude.as_mut().is_some_and(inside));
    }

    /// Whether the record last [followed](Self::follow) passes.
    pub fn matches(&self, rec: &ProcRecord) -> bool {
        let (included, excluded) = self.decided;
        included && !excluded && self.in_container(rec.process.as_deref()) && self.in_unit(rec.process.as_deref())
    }

    /// After the decision: a process's exit starts its way out of the filter's memory.
    pub fn forget(&mut self, rec: &ProcRecord) {
        if let (EventData::Exit { process_pid, process_tgid, .. }, Some(p)) = (rec.event.data, &rec.process) {
            if process_pid == process_tgid {
                for t in [&mut self.include, &mut self.exclude].into_iter().flatten() {
                    t.exited(p.entity_id);
                }
            }
        }
    }

    fn in_container(&self, p: Option<&ProcessInfo>) -> bool {
        if self.containers.is_empty() {
            return true;
        }
        let Some(c) = p.and_then(|p| p.container()) else { return false };
        self.containers.iter().any(|want| c.id.starts_with(&**want))
    }

    fn in_unit(&self, p: Option<&ProcessInfo>) -> bool {
        if self.units.is_empty() {
            return true;
        }
        let Some(p) = p else { return false };
        let unit = p.unit();
        let path = p.cgroup.as_ref().map(|c| c.path.as_bytes()).unwrap_or_default();
        self.units.iter().any(|want| {
            unit.is_some_and(|u| u == &**want || u.strip_suffix(".service") == Some(&**want))
                || path.split(|&b| b == b'/').any(|c| c == want.as_bytes())
        })
    }
}

/// The filter in a monitor: it follows every record before the decision and forgets after it, and asks for
/// fork and exit events when it follows the tree, and for the cgroup of each exec'd process when it filters by
/// container or unit (read at once, so that a short-lived program is placed too).
impl RecordFilter for TreeFilter {
    fn start(&mut self, table: &ProcessTable) -> Result<(), StartError> {
        TreeFilter::start(self, table).map_err(Into::into)
    }

    fn needs(&self) -> EventMask {
        if self.follows_tree() {
            EventMask::FORK | EventMask::EXIT
        } else {
            EventMask::NONE
        }
    }

    fn prefetch(&self) -> Wants {
        Wants { cgroup: !self.containers.is_empty() || !self.units.is_empty(), ..Wants::STAT }
    }

    fn before(&mut self, rec: &ProcRecord, cx: &mut FilterContext<'_>) {
        self.follow(cx.table, rec);
    }

    fn matches(&mut self, rec: &ProcRecord, _cx: &mut FilterContext<'_>) -> bool {
        TreeFilter::matches(self, rec)
    }

    fn after(&mut self, rec: &ProcRecord, _cx: &mut FilterContext<'_>) {
        self.forget(rec);
    }
}

/// The parent process an event names, for records whose own process is unknown.
fn named_parent(data: &EventData) -> Option<i32> {
    match *data {
        EventData::Fork { parent_tgid, .. }
        | EventData::Exit { parent_tgid, .. }
        | EventData::Coredump { parent_tgid, .. } => (parent_tgid > 0).then_some(parent_tgid),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
