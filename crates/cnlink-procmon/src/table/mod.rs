//! The process table: a sans-IO engine that turns proc connector events into
//! [`ProcRecord`](record::ProcRecord)s.
//!
//! It is seeded from a [`Snapshot`] of `/proc`, then kept by the events: a fork links the child to its parent
//! and hands it a copy of the parent's data (the child runs the same program until it execs); an exec reads
//! `/proc` and pushes the previous program onto the exec history; an exit detaches the process but keeps it
//! while its threads may still report (the last [`TableConfig::recent_exits`]) and while live descendants
//! need it for their ancestry; comm, uid, gid and sid events change what they say. Threads are tracked as
//! members of their group.
//!
//! The table does no IO of its own: every `/proc` read goes through the
//! [`ProcSource`](crate::procfs::ProcSource) passed to [`ProcessTable::handle`] (the live `/proc`, a
//! recording, or a [`crate::procfs::Prefetched`] observation read by the receive thread the moment the event
//! arrived).
//!
//! **Pid reuse.** Entries are keyed by a serial number, not by pid; a pid maps to its live process only. A
//! fork of a pid that is still live retires the stale entry; an observation is used for an event's process
//! only when its start time fits (the same start ticks as the entry, or for a fork child, within two ticks of
//! the fork event, or for a process met for the first time, no later than the event). So no record of a later
//! process shows an earlier process's id or metadata. After events were lost ([`ProcessTable::note_loss`]),
//! each entry is checked against `/proc/PID/stat` the next time an event names it.

mod handle;
mod leader;
pub mod process;
pub mod record;
mod tree;

use std::collections::HashMap;
use std::sync::Arc;

use crate::identity::{EntityId, EntityIdSource, HostIdentity};
use crate::intern::{CgroupInterner, Interner};
use crate::procfs::{Observation, Snapshot, Wants};
use process::{EntryLeader, EntryLeaderKind, ExeInfo, Namespaces, ProcessInfo, Program};
use tree::{Key, Tree};

/// How the table behaves and how much it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// Processes kept (live and exited); when full, exited ones go first, then those `/proc` no longer has,
    /// then arbitrary ones (counted as evictions).
    pub max_processes: usize,
    /// Threads kept for their start times.
    pub max_threads: usize,
    /// Exited processes kept for their threads' late exits.
    pub recent_exits: usize,
    /// Earlier programs kept per process.
    pub exec_history: usize,
    /// Ancestors put on exec and exit records (0: none).
    pub ancestor_depth: usize,
    /// What to read at exec, in the snapshot, and for processes met for the first time.
    pub wants: Wants,
    /// Read `/proc/PID/stat` of each fork child, for an entity id that equals the snapshot's.
    pub stat_on_fork: bool,
    /// Lines of a cgroup file classified.
    pub cgroup_lines: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_processes: 1 << 18,
            max_threads: 1 << 18,
            recent_exits: 4096,
            exec_history: 4,
            ancestor_depth: 64,
            wants: Wants::ALL,
            stat_on_fork: true,
            cgroup_lines: 64,
        }
    }
}

/// Counters of the table's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableStats {
    /// Live processes.
    pub live: usize,
    /// Exited processes still kept.
    pub exited: usize,
    /// Threads tracked.
    pub threads: usize,
    /// Processes dropped to stay within `max_processes`.
    pub evicted: u64,
    /// Threads dropped to stay within `max_threads`.
    pub threads_evicted: u64,
    /// Entries found stale (their process had exited unseen, and the pid was reused) and replaced.
    pub stale_replaced: u64,
    /// `/proc` observations made.
    pub observations: u64,
    /// Observations of exec'ing or new processes that found them gone.
    pub gone: u64,
    /// Observations rejected because the pid named another process.
    pub pid_reused: u64,
    /// Events whose process could not be identified (gone and never seen before).
    pub unresolved: u64,
}

/// Bytes the table holds, by kind (its own accounting: the sizes of its structures and shared values, each
/// shared value counted once; allocator overhead is not included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUsage {
    /// The maps and their entries.
    pub maps: usize,
    /// Process values (each distinct one once), their history and namespace pid arrays.
    pub processes: usize,
    /// Argument vectors.
    pub argv: usize,
    /// Interned names and paths.
    pub strings: usize,
    /// Interned cgroup files and their classification.
    pub cgroups: usize,
    /// Everything.
    pub total: usize,
}

/// The process table. See the [module documentation](self).
#[derive(Debug)]
pub struct ProcessTable {
    host: HostIdentity,
    cfg: TableConfig,
    ns_per_tick: u64,
    /// `CLOCK_BOOTTIME - CLOCK_MONOTONIC` as last observed.
    boot_offset_ns: u64,
    tree: Tree,
    names: Interner,
    cgroups: CgroupInterner,
    epoch: u32,
    stats: TableStats,
}

impl ProcessTable {
    /// An empty table for processes of `host` (start times counted in 100 ticks a second until
    /// [`seed`](Self::seed) says otherwise).
    pub fn new(host: HostIdentity, cfg: TableConfig) -> ProcessTable {
        ProcessTable {
            host,
            cfg,
            ns_per_tick: 10_000_000,
            boot_offset_ns: 0,
            tree: Tree::default(),
            names: Interner::default(),
            cgroups: CgroupInterner::default(),
            epoch: 0,
            stats: TableStats::default(),
        }
    }

    /// The host identity the ids are derived from.
    pub fn host(&self) -> &HostIdentity {
        &self.host
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Loads every process of a snapshot (taken after subscribing, so that no process falls between the two).
    /// A process already in the table with the same start time is kept as it is.
    pub fn seed(&mut self, snapshot: &Snapshot) {
        self.ns_per_tick = 1_000_000_000 / snapshot.ticks_per_second.max(1);
        if let Some(o) = snapshot.processes.iter().rfind(|o| o.stat.is_some()) {
            self.boot_offset_ns = o.boot_offset_ns;
        }
        let mut ids: HashMap<i32, EntityId> = HashMap::new();
        for o in &snapshot.processes {
            if let Some(t) = o.start_ticks() {
                ids.insert(o.pid, EntityId::from_stat(&self.host, o.pid, t));
            }
        }
        let mut added = Vec::new();
        for o in &snapshot.processes {
            let Some(stat) = &o.stat else { continue };
            if let Some(k) = self.tree.live.get(&o.pid) {
                if self.tree.info(*k).is_some_and(|i| i.start_ticks == Some(stat.start_ticks)) {
                    continue;
                }
            }
            let id = EntityId::from_stat(&self.host, o.pid, stat.start_ticks);
            let mut info = ProcessInfo::bare(o.pid, id, EntityIdSource::Stat);
            info.parent_entity_id = ids.get(&stat.ppid).copied();
            self.apply(&mut info, o, None);
            let k = self.insert(info, None, &mut crate::procfs::NoProc);
            added.push(k);
        }
        for &k in &added {
            let ppid = self.tree.info(k).map_or(0, |i| i.parent_pid);
            if let Some(&p) = self.tree.live.get(&ppid) {
                self.tree.link(k, p);
            }
        }
        for &k in &added {
            let Some(info) = self.tree.info(k) else { continue };
            let leader = self.leader_for(k, info);
            if let Some(e) = self.tree.entries.get_mut(&k) {
                Arc::make_mut(&mut e.info).entry_leader = Some(leader);
            }
        }
    }

    /// The live processes as a `/proc` snapshot would show them, with what the table knows, in pid order: what
    /// a recording starts a later file with (see [`crate::RecorderEvent::State`]), so that the file replays alone.
    ///
    /// A table seeded with it has the same processes, ids, parents, programs and entry leaders. Not in it:
    /// processes whose start time was never read (their ids come from events), exited processes kept for their
    /// threads and descendants, exec histories, the exec time of the running program, thread counts; start times
    /// come from the start ticks.
    pub fn as_snapshot(&self) -> Snapshot {
        use crate::procfs::{CgroupFile, Exe, PathRead, Stat, StatusFields};
        let mut processes: Vec<Observation> = self
            .iter()
            .filter_map(|i| {
                let start_ticks = i.start_ticks?;
                let threads = self.threads(i.pid);
                let program = &i.program;
                let c = i.creds;
                Some(Observation {
                    pid: i.pid,
                    status: i.status,
                    boot_offset_ns: self.boot_offset_ns,
                    stat: Some(Stat {
                        pid: i.pid,
                        name: program.name.as_bytes().to_vec(),
                        state: b'S',
                        ppid: i.parent_pid,
                        pgid: i.pgid,
                        sid: i.sid,
                        tty_nr: i.tty_nr,
                        flags: if i.kthread { crate::procfs::parse::PF_KTHREAD } else { 0 },
                        num_threads: i64::from(threads) + 1,
                        start_ticks,
                    }),
                    argv: program.argv.as_deref().cloned(),
                    exe: program.exe.as_ref().map(|e| Exe {
                        path: e.path.as_bytes().to_vec(),
                        deleted: e.deleted,
                        memfd: e.memfd,
                        truncated: e.truncated,
                    }),
                    cwd: i.cwd.as_ref().map(|p| PathRead { path: p.as_bytes().to_vec(), truncated: false }),
                    status_fields: c.ruid.map(|ruid| StatusFields {
                        ruid,
                        euid: c.euid.unwrap_or(ruid),
                        rgid: c.rgid.unwrap_or(0),
                        egid: c.egid.unwrap_or(0),
                        nspid: i.namespaces.nspid.as_deref().map(<[i32]>::to_vec).unwrap_or_default(),
                    }),
                    cgroup: i
                        .cgroup
                        .as_ref()
                        .map(|g| CgroupFile { bytes: g.raw.as_bytes().to_vec(), truncated: g.truncated }),
                    pid_ns: i.namespaces.pid_ns,
                    mnt_ns: i.namespaces.mnt_ns,
                })
            })
            .collect();
        processes.sort_by_key(|o| o.pid);
        Snapshot { ticks_per_second: 1_000_000_000 / self.ns_per_tick.max(1), processes }
    }

    /// Events were lost: every entry is checked against `/proc` before it is trusted again.
    pub fn note_loss(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// The live process `pid`.
    pub fn get(&self, pid: i32) -> Option<&Arc<ProcessInfo>> {
        self.tree.info(*self.tree.live.get(&pid)?)
    }

    /// The live process `pid`, else the latest exited one still kept.
    pub fn lookup(&self, pid: i32) -> Option<&Arc<ProcessInfo>> {
        self.get(pid).or_else(|| self.tree.info(*self.tree.exited.get(&pid)?))
    }

    fn key_of(&self, pid: i32) -> Option<Key> {
        self.tree.live.get(&pid).or_else(|| self.tree.exited.get(&pid)).copied()
    }

    /// The parent of the process `pid` (live or kept), if known.
    pub fn parent(&self, pid: i32) -> Option<&Arc<ProcessInfo>> {
        self.tree.info(self.tree.parent_of(self.key_of(pid)?)?)
    }

    /// The children of the process `pid` (live or kept), including exited ones still kept.
    pub fn children(&self, pid: i32) -> Vec<Arc<ProcessInfo>> {
        let Some(k) = self.key_of(pid) else { return Vec::new() };
        self.tree.children(k).into_iter().filter_map(|c| self.tree.info(c).cloned()).collect()
    }

    /// The ancestors of the process `pid`, parent first, at most `depth`.
    pub fn ancestors(&self, pid: i32, depth: usize) -> Vec<Arc<ProcessInfo>> {
        match self.key_of(pid) {
            Some(k) => self.ancestors_of(k, depth),
            None => Vec::new(),
        }
    }

    /// The ancestors of the process `pid` (live, else the latest exited one kept), parent first, up to init
    /// or the first unknown parent, at most [`Ancestry::MAX`]; nothing is copied.
    pub fn ancestry(&self, pid: i32) -> Ancestry<'_> {
        let next = self.key_of(pid).and_then(|k| self.tree.parent_of(k));
        Ancestry { tree: &self.tree, next, left: Ancestry::MAX }
    }

    /// Threads of the process `pid` besides its leader, as seen created and not yet exited.
    pub fn threads(&self, pid: i32) -> u32 {
        self.key_of(pid).and_then(|k| self.tree.entries.get(&k)).map_or(0, |e| e.threads)
    }

    /// The live processes.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ProcessInfo>> {
        self.tree.live.values().filter_map(|k| self.tree.info(*k))
    }

    /// Counters.
    pub fn stats(&self) -> TableStats {
        TableStats {
            live: self.tree.live.len(),
            exited: self.tree.entries.len() - self.tree.live.len().min(self.tree.entries.len()),
            threads: self.tree.threads.len(),
            ..self.stats
        }
    }

    /// What the table holds, in bytes (walks every entry: for statistics, not for every event).
    pub fn memory(&self) -> MemoryUsage {
        use std::collections::HashSet;
        use std::mem::size_of;
        let map = |cap: usize, item: usize| cap * (item + 1);
        let maps = map(self.tree.entries.capacity(), size_of::<(Key, tree::Entry)>())
            + map(self.tree.live.capacity(), size_of::<(i32, Key)>())
            + map(self.tree.exited.capacity(), size_of::<(i32, Key)>())
            + map(self.tree.threads.capacity(), size_of::<(i32, tree::Thread)>())
            + self.tree.ring.capacity() * size_of::<Key>();
        let mut seen = HashSet::new();
        let (mut processes, mut argv) = (0, 0);
        let count_program = |p: &Program, seen: &mut HashSet<usize>, argv: &mut usize| {
            if let Some(a) = &p.argv {
                if seen.insert(Arc::as_ptr(a) as usize) {
                    *argv += a.bytes.capacity() + size_of::<crate::procfs::Argv>() + 16;
                }
            }
        };
        for e in self.tree.entries.values() {
            let i = &e.info;
            if seen.insert(Arc::as_ptr(i) as usize) {
                processes += size_of::<ProcessInfo>() + 16;
                processes += i.namespaces.nspid.as_ref().map_or(0, |p| p.len() * 4);
                count_program(&i.program, &mut seen, &mut argv);
                if !i.exec_history.is_empty() && seen.insert(i.exec_history.as_ptr() as usize) {
                    processes += i.exec_history.len() * size_of::<Program>() + 16;
                    for p in i.exec_history.iter() {
                        count_program(p, &mut seen, &mut argv);
                    }
                }
                if let Some(l) = &i.entry_leader {
                    if seen.insert(Arc::as_ptr(l) as usize) {
                        processes += size_of::<EntryLeader>() + 16;
                    }
                }
            }
        }
        // Strings not interned (cwd, argv-independent paths) are interned too; count the interner.
        let strings = self.names.bytes();
        let cgroups = self.cgroups.bytes();
        MemoryUsage { maps, processes, argv, strings, cgroups, total: maps + processes + argv + strings + cgroups }
    }

    /// The ancestors of entry `k`, parent first.
    fn ancestors_of(&self, k: Key, depth: usize) -> Vec<Arc<ProcessInfo>> {
        let mut out = Vec::with_capacity(depth.min(8));
        let mut cur = self.tree.parent_of(k);
        while let Some(p) = cur {
            if out.len() >= depth {
                break;
            }
            let Some(info) = self.tree.info(p) else { break };
            out.push(info.clone());
            cur = self.tree.parent_of(p);
        }
        out
    }

    /// The entry leader of `info` (stored, or about to be stored, at entry `k`): the first process from it up
    /// through its ancestors that a rule of [`leader`] picks.
    fn leader_for(&self, k: Key, info: &ProcessInfo) -> Arc<EntryLeader> {
        let mut node = info;
        let mut parent_key = self.tree.parent_of(k);
        let mut hops = 0;
        let kind = loop {
            let parent = parent_key.and_then(|p| self.tree.info(p)).map(|a| &**a);
            if let Some(kind) = leader::kind_of(node, parent) {
                break kind;
            }
            match (parent, parent_key) {
                (Some(p), Some(pk)) if hops < self.cfg.ancestor_depth.max(64) => {
                    node = p;
                    parent_key = self.tree.parent_of(pk);
                    hops += 1;
                }
                _ => break EntryLeaderKind::Unknown,
            }
        };
        // Share the parent's value when it names the same leader.
        if let Some(pl) = self.tree.parent_of(k).and_then(|p| self.tree.info(p)).and_then(|p| p.entry_leader.as_ref()) {
            if pl.entity_id == node.entity_id && pl.kind == kind {
                return pl.clone();
            }
        }
        Arc::new(EntryLeader { pid: node.pid, entity_id: node.entity_id, name: node.program.name.clone(), kind })
    }

    /// The process's `CLOCK_MONOTONIC` start, from start ticks read at `boot_offset_ns`.
    fn start_mono(&self, start_ticks: u64, boot_offset_ns: u64) -> Option<u64> {
        start_ticks.saturating_mul(self.ns_per_tick).checked_sub(boot_offset_ns)
    }

    /// The observed process had started by `ts` (so it is the one an event at `ts` was about, if the pid
    /// matches).
    fn started_by(&self, o: &Observation, ts: u64) -> bool {
        o.start_ticks().is_some_and(|t| t.saturating_mul(self.ns_per_tick) <= ts.saturating_add(o.boot_offset_ns))
    }

    /// The observed process started within two ticks of a fork event at `ts`.
    fn forked_at(&self, start_ticks: u64, boot_offset_ns: u64, ts: u64) -> bool {
        let expected = ts.saturating_add(boot_offset_ns) / self.ns_per_tick;
        start_ticks + 2 >= expected && start_ticks <= expected + 1
    }

    /// Writes what an observation says into `info` (the program only when `program` says it was read for an
    /// exec or the snapshot; fields not read keep their values, except the program's).
    fn apply(&mut self, info: &mut ProcessInfo, o: &Observation, exec_ns: Option<u64>) {
        if let Some(s) = &o.stat {
            info.start_ticks = Some(s.start_ticks);
            if info.start_ns.is_none() {
                info.start_ns = self.start_mono(s.start_ticks, o.boot_offset_ns);
            }
            info.parent_pid = s.ppid;
            info.pgid = s.pgid;
            info.sid = s.sid;
            info.tty_nr = s.tty_nr;
            info.kthread = s.kthread();
        }
        let name = o.stat.as_ref().map(|s| self.names.intern(&s.name)).unwrap_or_default();
        let exe = o.exe.as_ref().map(|e| ExeInfo {
            path: self.names.intern(&e.path),
            deleted: e.deleted,
            memfd: e.memfd,
            truncated: e.truncated,
        });
        info.program = Program { name, argv: o.argv.clone().map(Arc::new), exe, exec_ns };
        if let Some(c) = &o.cwd {
            info.cwd = Some(self.names.intern(&c.path));
        }
        if let Some(s) = &o.status_fields {
            info.creds.ruid = Some(s.ruid);
            info.creds.euid = Some(s.euid);
            info.creds.rgid = Some(s.rgid);
            info.creds.egid = Some(s.egid);
            info.namespaces.nspid = (!s.nspid.is_empty()).then(|| s.nspid.clone().into_boxed_slice());
        }
        if let Some(c) = &o.cgroup {
            info.cgroup = Some(self.cgroups.intern(&c.bytes, c.truncated, self.cfg.cgroup_lines));
        }
        if o.pid_ns.is_some() || o.mnt_ns.is_some() {
            let nspid = info.namespaces.nspid.take();
            info.namespaces = Namespaces { pid_ns: o.pid_ns, mnt_ns: o.mnt_ns, nspid };
        }
        info.status = o.status;
        info.truncated = o.truncated();
    }
}

/// The ancestors of a process, parent first: see [`ProcessTable::ancestry`].
#[derive(Debug, Clone)]
pub struct Ancestry<'a> {
    tree: &'a Tree,
    next: Option<Key>,
    left: usize,
}

impl Ancestry<'_> {
    /// The most ancestors walked (a bound, should the links ever form a loop).
    pub const MAX: usize = 4096;
}

impl<'a> Iterator for Ancestry<'a> {
    type Item = &'a Arc<ProcessInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        let k = self.next?;
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.next = self.tree.parent_of(k);
        self.tree.info(k)
    }
}

#[cfg(test)]
mod tests;
