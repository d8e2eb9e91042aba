//! The table's storage: entries keyed by an internal serial number, the pid maps, the parent/children links
//! (intrusive sibling lists, so that unlinking is O(1) however many children a process has), retirement of
//! exited processes and the bounds.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::process::ProcessInfo;
use super::ProcessTable;
use crate::procfs::ProcSource;

/// Maps keyed by pid or entry key with a cheap multiplicative hash: the keys come from the kernel or from a
/// counter, not from an adversary that could choose collisions.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FibHasher>>;

/// Fibonacci hashing of an integer key.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FibHasher(u64);

impl Hasher for FibHasher {
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

    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// An entry's key: a serial number, never reused, so that a pid's earlier process is never mistaken for a later.
pub(crate) type Key = u64;

/// One process in the table.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) info: Arc<ProcessInfo>,
    pub(crate) parent: Option<Key>,
    pub(crate) first_child: Option<Key>,
    pub(crate) prev_sibling: Option<Key>,
    pub(crate) next_sibling: Option<Key>,
    /// Threads other than the leader, seen created and not yet exited.
    pub(crate) threads: u32,
    /// Exited: kept for late thread exits (while in the ring) and for its live descendants' ancestry.
    pub(crate) exited: bool,
    pub(crate) in_ring: bool,
    /// The loss epoch in which it was last verified against `/proc`.
    pub(crate) epoch: u32,
}

/// A thread other than its group's leader.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thread {
    pub(crate) group: Key,
    pub(crate) start_ns: u64,
}

/// The table's storage.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub(crate) entries: FastMap<Key, Entry>,
    /// The live process of each pid.
    pub(crate) live: FastMap<i32, Key>,
    /// The latest exited process of each pid (while it is kept).
    pub(crate) exited: FastMap<i32, Key>,
    /// Exited processes in exit order, kept for their threads' late exits.
    pub(crate) ring: VecDeque<Key>,
    pub(crate) threads: FastMap<i32, Thread>,
    pub(crate) next_key: Key,
}

impl Tree {
    pub(crate) fn info(&self, k: Key) -> Option<&Arc<ProcessInfo>> {
        self.entries.get(&k).map(|e| &e.info)
    }

    pub(crate) fn parent_of(&self, k: Key) -> Option<Key> {
        self.entries.get(&k)?.parent
    }

    /// Makes `child` a child of `parent` (unlinking it from any earlier parent).
    pub(crate) fn link(&mut self, child: Key, parent: Key) {
        if child == parent || !self.entries.contains_key(&parent) {
            return;
        }
        self.unlink(child);
        let head = self.entries.get(&parent).and_then(|p| p.first_child);
        if let Some(h) = head {
            if let Some(e) = self.entries.get_mut(&h) {
                e.prev_sibling = Some(child);
            }
        }
        if let Some(c) = self.entries.get_mut(&child) {
            c.parent = Some(parent);
            c.next_sibling = head;
            c.prev_sibling = None;
        }
        if let Some(p) = self.entries.get_mut(&parent) {
            p.first_child = Some(child);
        }
    }

    /// Detaches `child` from its parent's list of children.
    pub(crate) fn unlink(&mut self, child: Key) {
        let Some(c) = self.entries.get_mut(&child) else { return };
        let (parent, prev, next) = (c.parent.take(), c.prev_sibling.take(), c.next_sibling.take());
        let Some(parent) = parent else { return };
        match prev {
            Some(p) => {
                if let Some(e) = self.entries.get_mut(&p) {
                    e.next_sibling = next;
                }
            }
            None => {
                if let Some(e) = self.entries.get_mut(&parent) {
                    e.first_child = next;
                }
            }
        }
        if let Some(n) = next {
            if let Some(e) = self.entries.get_mut(&n) {
                e.prev_sibling = prev;
            }
        }
    }

    /// The children of `k`.
    pub(crate) fn children(&self, k: Key) -> Vec<Key> {
        let mut out = Vec::new();
        let mut cur = self.entries.get(&k).and_then(|e| e.first_child);
        while let Some(c) = cur {
            out.push(c);
            cur = self.entries.get(&c).and_then(|e| e.next_sibling);
        }
        out
    }

    /// Removes an entry for good; its children lose their parent link (their `parent_entity_id` stays).
    fn remove(&mut self, k: Key) {
        for c in self.children(k) {
            if let Some(e) = self.entries.get_mut(&c) {
                e.parent = None;
                e.prev_sibling = None;
                e.next_sibling = None;
            }
        }
        if let Some(e) = self.entries.get_mut(&k) {
            e.first_child = None;
        }
        self.unlink(k);
        if let Some(e) = self.entries.remove(&k) {
            let pid = e.info.pid;
            if self.live.get(&pid) == Some(&k) {
                self.live.remove(&pid);
            }
            if self.exited.get(&pid) == Some(&k) {
                self.exited.remove(&pid);
            }
        }
    }

    /// Removes exited entries that nothing needs any more, from `k` up through its exited ancestors.
    pub(crate) fn collect(&mut self, mut k: Key) {
        loop {
            let Some(e) = self.entries.get(&k) else { return };
            if !e.exited || e.in_ring || e.first_child.is_some() {
                return;
            }
            let parent = e.parent;
            self.remove(k);
            match parent {
                Some(p) => k = p,
                None => return,
            }
        }
    }
}

impl ProcessTable {
    /// Marks `k` exited: no longer the live process of its pid; kept while its threads may still report or
    /// its descendants need it.
    pub(crate) fn retire(&mut self, k: Key) {
        let Some(e) = self.tree.entries.get_mut(&k) else { return };
        if e.exited {
            return;
        }
        e.exited = true;
        e.in_ring = true;
        let pid = e.info.pid;
        if self.tree.live.get(&pid) == Some(&k) {
            self.tree.live.remove(&pid);
        }
        self.tree.exited.insert(pid, k);
        self.tree.ring.push_back(k);
        while self.tree.ring.len() > self.cfg.recent_exits {
            let Some(old) = self.tree.ring.pop_front() else { break };
            if let Some(e) = self.tree.entries.get_mut(&old) {
                e.in_ring = false;
            }
            self.tree.collect(old);
        }
    }

    /// Brings a retired entry back to life (a non-leader thread's exec: the kernel reported the old leader's
    /// exit, then the exec that took over its pid).
    pub(crate) fn revive(&mut self, k: Key) {
        let Some(e) = self.tree.entries.get_mut(&k) else { return };
        e.exited = false;
        let pid = e.info.pid;
        if self.tree.exited.get(&pid) == Some(&k) {
            self.tree.exited.remove(&pid);
        }
        self.tree.live.insert(pid, k);
        // It stays in the ring until pushed out; leaving the ring does not remove a live entry.
    }

    /// Stores a new process, the live one of its pid, linked to `parent`.
    pub(crate) fn insert<S: ProcSource + ?Sized>(
        &mut self,
        info: ProcessInfo,
        parent: Option<Key>,
        src: &mut S,
    ) -> Key {
        if self.tree.entries.len() >= self.cfg.max_processes {
            self.make_room(src);
        }
        let pid = info.pid;
        if let Some(&old) = self.tree.live.get(&pid) {
            self.stats.stale_replaced += 1;
            self.retire(old);
        }
        let k = self.tree.next_key;
        self.tree.next_key += 1;
        let entry = Entry {
            info: Arc::new(info),
            parent: None,
            first_child: None,
            prev_sibling: None,
            next_sibling: None,
            threads: 0,
            exited: false,
            in_ring: false,
            epoch: self.epoch,
        };
        self.tree.entries.insert(k, entry);
        self.tree.live.insert(pid, k);
        if let Some(p) = parent {
            self.tree.link(k, p);
        }
        k
    }

    /// Frees room: exited entries first, then live entries whose pid no longer exists, then arbitrary ones
    /// (counted in [`super::TableStats::evicted`]).
    fn make_room<S: ProcSource + ?Sized>(&mut self, src: &mut S) {
        let before = self.tree.entries.len();
        let keep = self.cfg.recent_exits / 2;
        while self.tree.ring.len() > keep {
            let Some(old) = self.tree.ring.pop_front() else { break };
            if let Some(e) = self.tree.entries.get_mut(&old) {
                e.in_ring = false;
            }
            self.tree.collect(old);
        }
        let target = self.cfg.max_processes - self.cfg.max_processes / 4;
        if self.tree.entries.len() > target {
            let live: Vec<(i32, Key)> = self.tree.live.iter().map(|(&p, &k)| (p, k)).collect();
            for (pid, k) in live {
                if !src.exists(pid) {
                    self.retire(k);
                }
            }
        }
        if self.tree.entries.len() > target {
            let excess = self.tree.entries.len() - target;
            let victims: Vec<Key> = self.tree.entries.keys().take(excess).copied().collect();
            for k in victims {
                self.tree.remove(k);
            }
        }
        self.stats.evicted += before.saturating_sub(self.tree.entries.len()) as u64;
    }

    /// Records a new thread of the group `group`.
    pub(crate) fn add_thread(&mut self, tid: i32, group: Key, start_ns: u64) {
        if self.tree.threads.len() >= self.cfg.max_threads && !self.tree.threads.contains_key(&tid) {
            let before = self.tree.threads.len();
            let entries = &self.tree.entries;
            self.tree.threads.retain(|_, t| entries.get(&t.group).is_some_and(|e| !e.exited));
            if self.tree.threads.len() >= self.cfg.max_threads {
                self.tree.threads.clear();
            }
            self.stats.threads_evicted += (before - self.tree.threads.len()) as u64;
        }
        self.tree.threads.insert(tid, Thread { group, start_ns });
        if let Some(e) = self.tree.entries.get_mut(&group) {
            e.threads = e.threads.saturating_add(1);
        }
    }
}
