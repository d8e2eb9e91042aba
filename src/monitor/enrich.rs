//! The process cache: who each process is, learnt from a `/proc` snapshot at start and kept up to date by the
//! events themselves, so that an exit line still has a name after the process is gone.
//!
//! A fork copies the parent's entry (no `/proc` read); an exec re-reads `/proc/PID` (the process exists then);
//! an exit removes the entry (keeping the last few thousand aside: when a multi-threaded process exits, the
//! leader's exit event can come before its other threads'). The cache is bounded: when full, entries of processes that no longer exist are
//! swept, then arbitrary ones are dropped (counted).

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use super::procfs::{self, ProcReader, Wants};

/// Maps keyed by pid with a cheap multiplicative hash: the keys come from the kernel, not from an adversary that
/// could choose collisions, and SipHash would be a good part of the cost per event in a storm.
type PidMap<V> = HashMap<i32, V, BuildHasherDefault<PidHasher>>;

/// Fibonacci hashing of a pid.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = (u64::from(n as u32) ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// How many exited processes are kept for their threads' late exits.
const RECENT_EXITS: usize = 4096;

/// What we know about one process (thread group).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcInfo {
    /// The 16-byte task name.
    pub(crate) comm: Rc<str>,
    /// The command line, NULs as spaces; empty for kernel threads and when unknown.
    pub(crate) cmdline: Rc<str>,
    /// Real uid.
    pub(crate) uid: Option<u32>,
    /// Effective uid.
    pub(crate) euid: Option<u32>,
    /// Parent process id (at the snapshot or fork).
    pub(crate) ppid: i32,
    /// Process group.
    pub(crate) pgid: i32,
    /// `tty_nr` from `/proc/PID/stat`.
    pub(crate) tty: u32,
    /// The cgroup path.
    pub(crate) cgroup: Rc<str>,
    /// `CLOCK_MONOTONIC` start time in ns: the fork event's timestamp, or `/proc` (tick resolution).
    pub(crate) start_ns: Option<u64>,
    /// A kernel thread.
    pub(crate) kthread: bool,
    /// The JSON fields above, formatted once (`,"comm":…,"cmdline":…`); reset whenever they change.
    pub(crate) json: OnceCell<Rc<[u8]>>,
}

/// The cache of processes and thread start times.
#[derive(Debug)]
pub(crate) struct Cache {
    procs: PidMap<ProcInfo>,
    threads: PidMap<u64>,
    /// Processes that exited lately, for the exits of their threads reported after the leader's.
    exited: PidMap<ProcInfo>,
    exited_order: VecDeque<i32>,
    max: usize,
    /// Read `/proc` at all (off with `--no-enrich`: names come only from comm events).
    read_proc: bool,
    reader: ProcReader,
    /// Entries dropped because the cache was full.
    pub(crate) evicted: u64,
}

impl Cache {
    pub(crate) fn new(max: usize, read_proc: bool, wants: Wants) -> Self {
        Cache {
            procs: PidMap::default(),
            threads: PidMap::default(),
            exited: PidMap::default(),
            exited_order: VecDeque::new(),
            max: max.max(64),
            read_proc,
            reader: ProcReader::new(wants),
            evicted: 0,
        }
    }

    /// Loads every process in `/proc`.
    pub(crate) fn snapshot(&mut self) {
        if !self.read_proc {
            return;
        }
        for pid in procfs::all_pids() {
            if let Some(info) = self.reader.process(pid) {
                self.insert(pid, info);
            }
        }
    }

    /// All cached processes (for the descendant filter's start).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i32, &ProcInfo)> {
        self.procs.iter().map(|(&p, i)| (p, i))
    }

    /// Processes in the table.
    pub(crate) fn len(&self) -> usize {
        self.procs.len()
    }

    /// `/proc` reads that failed because the process was already gone.
    pub(crate) fn read_failures(&self) -> u64 {
        self.reader.failures
    }

    /// The entry for `tgid`, also if it exited lately.
    pub(crate) fn get(&self, tgid: i32) -> Option<&ProcInfo> {
        self.procs.get(&tgid).or_else(|| self.exited.get(&tgid))
    }

    /// The entry for `tgid`, read from `/proc` if it is not cached yet (a process from before the snapshot's
    /// reach, or one whose fork was filtered away).
    pub(crate) fn get_or_load(&mut self, tgid: i32) -> Option<&ProcInfo> {
        let known = self.procs.contains_key(&tgid) || self.exited.contains_key(&tgid);
        if !known && self.read_proc && tgid > 0 {
            if let Some(info) = self.reader.process(tgid) {
                self.insert(tgid, info);
            }
        }
        self.get(tgid)
    }

    fn insert(&mut self, tgid: i32, info: ProcInfo) {
        if self.procs.len() >= self.max && !self.procs.contains_key(&tgid) {
            self.make_room();
        }
        self.procs.insert(tgid, info);
    }

    /// Sweeps entries of processes that no longer exist; if that frees too little, drops arbitrary ones.
    fn make_room(&mut self) {
        let before = self.procs.len();
        self.procs.retain(|&pid, _| procfs::exists(pid));
        self.threads.retain(|&tid, _| procfs::exists(tid));
        let target = self.max - self.max / 4;
        if self.procs.len() > target {
            let drop: Vec<i32> = self.procs.keys().take(self.procs.len() - target).copied().collect();
            for pid in drop {
                self.procs.remove(&pid);
            }
        }
        self.evicted += (before - self.procs.len()) as u64;
    }

    /// A task was created at `ts`: a process inherits its parent's entry; a thread's start time is kept.
    pub(crate) fn on_fork(&mut self, parent_tgid: i32, child_pid: i32, child_tgid: i32, ts: u64) {
        if child_pid != child_tgid {
            if self.threads.len() >= self.max {
                self.threads.retain(|&tid, _| procfs::exists(tid));
                if self.threads.len() >= self.max {
                    self.evicted += self.threads.len() as u64;
                    self.threads.clear();
                }
            }
            self.threads.insert(child_pid, ts);
            return;
        }
        let mut info = match self.get_or_load(parent_tgid) {
            Some(p) => p.clone(),
            None => ProcInfo::default(),
        };
        info.ppid = parent_tgid;
        info.start_ns = Some(ts);
        self.insert(child_tgid, info);
    }

    /// An exec succeeded: re-read `/proc` (keeping what the fork gave when the process is already gone).
    pub(crate) fn on_exec(&mut self, tgid: i32) {
        if !self.read_proc {
            return;
        }
        let Some(mut fresh) = self.reader.process(tgid) else {
            // Gone before we could look: the inherited name is the parent's program, not this one's.
            if let Some(info) = self.procs.get_mut(&tgid) {
                info.comm = Rc::from("");
                info.cmdline = Rc::from("");
                info.json = OnceCell::new();
            }
            return;
        };
        if let Some(old) = self.procs.get(&tgid) {
            fresh.start_ns = old.start_ns.or(fresh.start_ns);
            fresh.uid = fresh.uid.or(old.uid);
            fresh.euid = fresh.euid.or(old.euid);
        }
        self.insert(tgid, fresh);
    }

    /// How long the task lived, if its start is known.
    pub(crate) fn lifetime(&self, pid: i32, tgid: i32, ts: u64) -> Option<u64> {
        let start = if pid == tgid { self.procs.get(&tgid)?.start_ns? } else { *self.threads.get(&pid)? };
        Some(ts.saturating_sub(start))
    }

    /// A task exited: forget it (the whole entry when the leader exits).
    pub(crate) fn on_exit(&mut self, pid: i32, tgid: i32) {
        if pid == tgid {
            if let Some(info) = self.procs.remove(&tgid) {
                if self.exited_order.len() >= RECENT_EXITS {
                    if let Some(old) = self.exited_order.pop_front() {
                        self.exited.remove(&old);
                    }
                }
                self.exited.insert(tgid, info);
                self.exited_order.push_back(tgid);
            }
        } else {
            self.threads.remove(&pid);
        }
    }

    /// The task renamed itself; returns the old name. A thread's rename leaves the process name alone.
    pub(crate) fn on_comm(&mut self, pid: i32, tgid: i32, comm: &str) -> Option<Rc<str>> {
        let info = self.procs.get_mut(&tgid)?;
        let old = info.comm.clone();
        if pid == tgid {
            info.comm = Rc::from(comm);
            info.json = OnceCell::new();
        }
        Some(old)
    }

    /// The uids changed; returns the old real uid.
    pub(crate) fn on_uid(&mut self, tgid: i32, ruid: u32, euid: u32) -> Option<u32> {
        let info = self.procs.get_mut(&tgid)?;
        let old = info.uid;
        info.uid = Some(ruid);
        info.euid = Some(euid);
        info.json = OnceCell::new();
        old
    }

    /// The process group as read live.
    pub(crate) fn set_pgid(&mut self, tgid: i32, pgid: i32) {
        if let Some(info) = self.procs.get_mut(&tgid) {
            info.pgid = pgid;
        }
    }

    /// `setsid`: the process leads a new session and process group.
    pub(crate) fn on_sid(&mut self, tgid: i32) {
        if let Some(info) = self.procs.get_mut(&tgid) {
            info.pgid = tgid;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(1000, false, Wants::default())
    }

    #[test]
    fn fork_inherits_and_exit_forgets() {
        let mut c = cache();
        c.insert(10, ProcInfo { comm: "bash".into(), uid: Some(1000), ..Default::default() });
        c.on_fork(10, 11, 11, 5_000);
        let child = c.get(11).expect("child cached");
        assert_eq!((&*child.comm, child.uid, child.ppid, child.start_ns), ("bash", Some(1000), 10, Some(5_000)));
        assert_eq!(c.lifetime(11, 11, 8_000), Some(3_000));
        c.on_exit(11, 11);
        // Kept aside for its threads' exits, which may come after the leader's.
        assert_eq!(c.get(11).map(|i| &*i.comm), Some("bash"));
        for pid in 100..100 + RECENT_EXITS as i32 {
            c.on_fork(10, pid, pid, 0);
            c.on_exit(pid, pid);
        }
        assert!(c.get(11).is_none());
    }

    #[test]
    fn threads_get_lifetimes_without_entries() {
        let mut c = cache();
        c.on_fork(10, 12, 10, 100);
        assert!(c.get(12).is_none());
        assert_eq!(c.lifetime(12, 10, 150), Some(50));
        c.on_exit(12, 10);
        assert_eq!(c.lifetime(12, 10, 150), None);
    }

    #[test]
    fn comm_and_uid_changes() {
        let mut c = cache();
        c.insert(10, ProcInfo { comm: "a".into(), uid: Some(0), ..Default::default() });
        assert_eq!(c.on_comm(10, 10, "b").as_deref(), Some("a"));
        assert_eq!(&*c.get(10).unwrap().comm, "b");
        assert_eq!(c.on_comm(11, 10, "thread").as_deref(), Some("b"));
        assert_eq!(&*c.get(10).unwrap().comm, "b");
        assert_eq!(c.on_uid(10, 1000, 1000), Some(0));
        assert_eq!(c.get(10).unwrap().uid, Some(1000));
    }

    #[test]
    fn bounded() {
        let mut c = Cache::new(64, false, Wants::default());
        for pid in 0..1000 {
            c.on_fork(1, 10_000_000 + pid, 10_000_000 + pid, 0);
        }
        assert!(c.len() <= 64);
        assert!(c.evicted > 0);
    }
}
