//! Handling each event: which entry it is about, what it changes, and the record it yields.

use std::sync::Arc;

use cnlink::wire::EventData;

use super::process::{Namespaces, ProcessInfo, Program};
use super::record::{KernelEvent, ProcRecord};
use super::tree::Key;
use super::ProcessTable;
use crate::identity::{EntityId, EntityIdSource};
use crate::procfs::{EnrichStatus, Observation, ProcSource, Wants};

/// Whether an event may be about a process the table saw exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exited {
    /// No: a live process, or one read from `/proc`.
    Never,
    /// Yes, if it still has threads (its leader exited first; the others go on, and may fork or rename).
    WithThreads,
    /// Yes (late thread exits, core dumps of a group whose leader already exited).
    Always,
}

/// `programs` with `newest` in front, at most `max` long.
fn pushed(newest: &Program, programs: &[Program], max: usize) -> Arc<[Program]> {
    let mut v = Vec::with_capacity(max.min(programs.len() + 1));
    if max > 0 {
        v.push(newest.clone());
        v.extend(programs.iter().take(max - 1).cloned());
    }
    Arc::from(v)
}

impl ProcessTable {
    /// Applies one event and returns it with what the table knows about its process. `src` is read for
    /// fork children (`stat`), execs and processes not in the table yet.
    pub fn handle<S: ProcSource + ?Sized>(&mut self, ev: &KernelEvent, src: &mut S) -> ProcRecord {
        match ev.data {
            EventData::Fork { parent_tgid, child_pid, child_tgid, .. } => {
                self.on_fork(ev, parent_tgid, child_pid, child_tgid, src)
            }
            EventData::Exec { process_tgid, .. } => self.on_exec(ev, process_tgid, src),
            EventData::Exit { process_pid, process_tgid, parent_tgid, .. } => {
                self.on_exit(ev, process_pid, process_tgid, parent_tgid, src)
            }
            EventData::Uid { process_pid, process_tgid, ruid, euid } => {
                self.on_change(ev, process_pid, process_tgid, src, |i| {
                    i.creds.ruid = Some(ruid);
                    i.creds.euid = Some(euid);
                })
            }
            EventData::Gid { process_pid, process_tgid, rgid, egid } => {
                self.on_change(ev, process_pid, process_tgid, src, |i| {
                    i.creds.rgid = Some(rgid);
                    i.creds.egid = Some(egid);
                })
            }
            EventData::Sid { process_pid, process_tgid } => {
                // setsid: a new session and process group, without a controlling terminal.
                self.on_change(ev, process_pid, process_tgid, src, |i| {
                    i.sid = i.pid;
                    i.pgid = i.pid;
                    i.tty_nr = 0;
                })
            }
            EventData::Comm { process_pid, process_tgid, comm } if process_pid == process_tgid => {
                let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                let name = self.names.intern(&comm[..end]);
                self.on_change(ev, process_pid, process_tgid, src, |i| i.program.name = name)
            }
            EventData::Comm { process_pid, process_tgid, .. }
            | EventData::Ptrace { process_pid, process_tgid, .. }
            | EventData::Coredump { process_pid, process_tgid, .. } => {
                match self.resolve(ev, process_tgid, Exited::Always, src) {
                    Ok(k) => self.record(ev, k, process_pid),
                    Err(status) => self.unresolved(ev, process_pid, process_tgid, status),
                }
            }
            _ => ProcRecord::bare(*ev),
        }
    }

    /// Reads `/proc/PID` through `src`, counting.
    fn observe<S: ProcSource + ?Sized>(&mut self, src: &mut S, pid: i32, wants: Wants) -> Observation {
        self.stats.observations += 1;
        let o = src.observe(pid, wants);
        if o.stat.is_some() {
            self.boot_offset_ns = o.boot_offset_ns;
        }
        o
    }

    /// The record of an event about entry `k` (thread `tid`).
    fn record(&self, ev: &KernelEvent, k: Key, tid: i32) -> ProcRecord {
        let info = self.tree.info(k).cloned();
        let parent = self.tree.parent_of(k).and_then(|p| self.tree.info(p)).cloned();
        let mut rec = ProcRecord::bare(*ev).with(info, parent);
        if rec.process.as_ref().is_some_and(|p| p.pid != tid) {
            rec.tid = Some(tid);
        }
        rec
    }

    /// The record of an event whose process cannot be identified: an id from the event itself.
    fn unresolved(&mut self, ev: &KernelEvent, pid: i32, tgid: i32, status: EnrichStatus) -> ProcRecord {
        self.stats.unresolved += 1;
        let mut rec = ProcRecord::bare(*ev);
        rec.entity_id = Some(EntityId::from_event(&self.host, tgid, ev.cpu, ev.seq, ev.timestamp_ns));
        rec.entity_id_source = Some(EntityIdSource::Event);
        rec.status = status;
        rec.tid = (pid != tgid).then_some(pid);
        rec
    }

    /// The entry of process `tgid`: the live one (checked against `/proc` after a loss), else (as `exited`
    /// allows) the latest exited one, else one made from reading `/proc`.
    fn resolve<S: ProcSource + ?Sized>(
        &mut self,
        ev: &KernelEvent,
        tgid: i32,
        exited: Exited,
        src: &mut S,
    ) -> Result<Key, EnrichStatus> {
        if tgid <= 0 {
            return Err(EnrichStatus::Gone);
        }
        if let Some(&k) = self.tree.live.get(&tgid) {
            if self.verify(ev, k, src) {
                return Ok(k);
            }
        }
        if let Some(&k) = self.tree.exited.get(&tgid) {
            let threads = self.tree.entries.get(&k).map_or(0, |e| e.threads);
            if exited == Exited::Always || (exited == Exited::WithThreads && threads > 0) {
                return Ok(k);
            }
        }
        let o = self.observe(src, tgid, self.cfg.wants);
        self.adopt(ev, &o, None, src)
    }

    /// After a loss: whether entry `k` is still the process of its pid (if not, it is retired).
    fn verify<S: ProcSource + ?Sized>(&mut self, ev: &KernelEvent, k: Key, src: &mut S) -> bool {
        let Some(e) = self.tree.entries.get(&k) else { return false };
        if e.epoch == self.epoch {
            return true;
        }
        let (pid, known) = (e.info.pid, e.info.start_ticks);
        let o = self.observe(src, pid, Wants::STAT);
        if let Some(e) = self.tree.entries.get_mut(&k) {
            e.epoch = self.epoch;
        }
        match (known, o.start_ticks()) {
            (Some(a), Some(b)) if a != b && self.started_by(&o, ev.timestamp_ns) => {
                self.stats.stale_replaced += 1;
                self.retire(k);
                false
            }
            _ => true,
        }
    }

    /// The id of process `pid` started at `start_ticks`; if that equals the id of the pid's previous process
    /// (forced reuse within one tick), an id from the event instead, from `fallback`.
    fn stat_id(
        &self,
        ev: &KernelEvent,
        pid: i32,
        start_ticks: u64,
        fallback: EntityIdSource,
    ) -> (EntityId, EntityIdSource) {
        let id = EntityId::from_stat(&self.host, pid, start_ticks);
        let previous = self.tree.exited.get(&pid).and_then(|k| self.tree.info(*k));
        if previous.is_some_and(|p| p.entity_id == id) {
            let alt = match fallback {
                EntityIdSource::ForkEvent => EntityId::from_fork_event,
                _ => EntityId::from_event,
            };
            return (alt(&self.host, pid, ev.cpu, ev.seq, ev.timestamp_ns), fallback);
        }
        (id, EntityIdSource::Stat)
    }

    /// A new entry from an observation of a process the table did not know, if it is the event's process.
    fn adopt<S: ProcSource + ?Sized>(
        &mut self,
        ev: &KernelEvent,
        o: &Observation,
        exec_ns: Option<u64>,
        src: &mut S,
    ) -> Result<Key, EnrichStatus> {
        let Some(stat) = &o.stat else {
            self.stats.gone += 1;
            return Err(EnrichStatus::Gone);
        };
        if o.status == EnrichStatus::PidReused || !self.started_by(o, ev.timestamp_ns) {
            self.stats.pid_reused += 1;
            return Err(EnrichStatus::PidReused);
        }
        let (id, source) = self.stat_id(ev, o.pid, stat.start_ticks, EntityIdSource::Event);
        let mut info = ProcessInfo::bare(o.pid, id, source);
        self.apply(&mut info, o, exec_ns);
        let parent = self.tree.live.get(&stat.ppid).copied();
        info.parent_entity_id = parent.and_then(|p| self.tree.info(p)).map(|p| p.entity_id);
        let k = self.insert(info, parent, src);
        self.set_leader(k);
        Ok(k)
    }

    /// Computes and stores the entry leader of `k`.
    fn set_leader(&mut self, k: Key) {
        let Some(info) = self.tree.info(k) else { return };
        let leader = self.leader_for(k, info);
        if let Some(e) = self.tree.entries.get_mut(&k) {
            Arc::make_mut(&mut e.info).entry_leader = Some(leader);
        }
    }

    /// Makes `ppid`'s live process the parent of `k` (or none, if it is unknown).
    fn reparent(&mut self, k: Key, ppid: i32) {
        let parent = self.tree.live.get(&ppid).copied().filter(|&p| p != k);
        let before = self.tree.parent_of(k);
        match parent {
            Some(p) => self.tree.link(k, p),
            None => self.tree.unlink(k),
        }
        let parent_id = parent.and_then(|p| self.tree.info(p)).map(|p| p.entity_id);
        if let Some(e) = self.tree.entries.get_mut(&k) {
            let info = Arc::make_mut(&mut e.info);
            info.parent_pid = ppid;
            info.parent_entity_id = parent_id;
        }
        // An exited parent that no child needs any more goes.
        if let Some(b) = before.filter(|&b| Some(b) != parent) {
            self.tree.collect(b);
        }
    }

    fn on_change<S: ProcSource + ?Sized>(
        &mut self,
        ev: &KernelEvent,
        pid: i32,
        tgid: i32,
        src: &mut S,
        change: impl FnOnce(&mut ProcessInfo),
    ) -> ProcRecord {
        let k = match self.resolve(ev, tgid, Exited::WithThreads, src) {
            Ok(k) => k,
            Err(status) => return self.unresolved(ev, pid, tgid, status),
        };
        let Some(e) = self.tree.entries.get_mut(&k) else { return self.unresolved(ev, pid, tgid, EnrichStatus::Gone) };
        let old = e.info.clone();
        let mut new = (*old).clone();
        change(&mut new);
        e.info = Arc::new(new);
        let mut rec = self.record(ev, k, pid);
        rec.previous = Some(old);
        rec
    }

    fn on_fork<S: ProcSource + ?Sized>(
        &mut self,
        ev: &KernelEvent,
        parent_tgid: i32,
        child_pid: i32,
        child_tgid: i32,
        src: &mut S,
    ) -> ProcRecord {
        let ts = ev.timestamp_ns;
        let parent = self.resolve(ev, parent_tgid, Exited::WithThreads, src).ok();
        if child_pid != child_tgid {
            let group = if child_tgid == parent_tgid {
                parent
            } else {
                self.resolve(ev, child_tgid, Exited::WithThreads, src).ok()
            };
            return match group {
                Some(g) => {
                    self.add_thread(child_pid, g, ts);
                    self.record(ev, g, child_pid)
                }
                None => self.unresolved(ev, child_pid, child_tgid, EnrichStatus::Gone),
            };
        }
        // The snapshot may already hold the child (it was read after the fork, before this event).
        if let Some(&old) = self.tree.live.get(&child_tgid) {
            let same = self
                .tree
                .info(old)
                .and_then(|i| i.start_ticks)
                .is_some_and(|t| self.forked_at(t, self.boot_offset_ns, ts));
            if same {
                if parent.is_some_and(|p| self.tree.parent_of(old) != Some(p)) {
                    self.reparent(old, parent_tgid);
                }
                return self.record(ev, old, child_pid);
            }
        }
        let wants = if parent.is_some() { Wants::STAT } else { self.cfg.wants };
        let o = (self.cfg.stat_on_fork || parent.is_none()).then(|| self.observe(src, child_tgid, wants));
        let fits = o.as_ref().filter(|o| {
            o.status != EnrichStatus::PidReused
                && o.stat.as_ref().is_some_and(|s| self.forked_at(s.start_ticks, o.boot_offset_ns, ts))
        });
        if let (Some(o), None) = (&o, fits) {
            match o.stat {
                None => self.stats.gone += 1,
                Some(_) => self.stats.pid_reused += 1,
            }
        }
        let (id, source) = match fits.and_then(|o| o.start_ticks()) {
            Some(t) => self.stat_id(ev, child_tgid, t, EntityIdSource::ForkEvent),
            None => (EntityId::from_fork_event(&self.host, child_tgid, ev.cpu, ev.seq, ts), EntityIdSource::ForkEvent),
        };
        let parent_info = parent.and_then(|p| self.tree.info(p)).cloned();
        let mut info = match &parent_info {
            Some(p) => ProcessInfo {
                pid: child_tgid,
                entity_id: id,
                entity_id_source: source,
                start_ticks: None,
                start_ns: Some(ts),
                parent_pid: parent_tgid,
                parent_entity_id: Some(p.entity_id),
                namespaces: Namespaces { pid_ns: p.namespaces.pid_ns, mnt_ns: p.namespaces.mnt_ns, nspid: None },
                ..(**p).clone()
            },
            None => {
                let mut i = ProcessInfo::bare(child_tgid, id, source);
                i.start_ns = Some(ts);
                i.parent_pid = parent_tgid;
                i
            }
        };
        match (fits, &parent_info) {
            (Some(o), None) => self.apply(&mut info, o, None),
            (Some(o), Some(_)) => {
                if let Some(s) = &o.stat {
                    info.start_ticks = Some(s.start_ticks);
                    info.pgid = s.pgid;
                    info.sid = s.sid;
                    info.tty_nr = s.tty_nr;
                }
            }
            _ => {}
        }
        let k = self.insert(info, parent, src);
        if parent_info.is_none() {
            self.set_leader(k);
        }
        self.record(ev, k, child_pid)
    }

    fn on_exec<S: ProcSource + ?Sized>(&mut self, ev: &KernelEvent, tgid: i32, src: &mut S) -> ProcRecord {
        let ts = ev.timestamp_ns;
        let mut existing = self.tree.live.get(&tgid).copied();
        if existing.is_none() {
            // A thread other than the leader exec'd: the kernel reported the old leader's exit first.
            if let Some(&k) = self.tree.exited.get(&tgid) {
                self.revive(k);
                existing = Some(k);
            }
        }
        let o = self.observe(src, tgid, self.cfg.wants);
        let Some(k) = existing else {
            return match self.adopt(ev, &o, Some(ts), src) {
                Ok(k) => self.exec_record(ev, k, None),
                Err(status) => self.unresolved(ev, tgid, tgid, status),
            };
        };
        let Some(old) = self.tree.info(k).cloned() else { return self.unresolved(ev, tgid, tgid, EnrichStatus::Gone) };
        let usable = o.stat.is_some() && o.status != EnrichStatus::PidReused;
        let fits = usable
            && match (o.start_ticks(), old.start_ticks, old.start_ns) {
                (Some(seen), Some(known), _) => seen == known,
                (Some(seen), None, Some(fork_ns)) => self.forked_at(seen, o.boot_offset_ns, fork_ns),
                (Some(_), None, None) => self.started_by(&o, ts),
                (None, _, _) => false,
            };
        if !fits && usable && old.start_ticks.is_some() && self.started_by(&o, ts) {
            // The entry belongs to an earlier process whose exit was never seen.
            self.stats.stale_replaced += 1;
            self.retire(k);
            return match self.adopt(ev, &o, Some(ts), src) {
                Ok(k) => self.exec_record(ev, k, None),
                Err(status) => self.unresolved(ev, tgid, tgid, status),
            };
        }
        let mut new = (*old).clone();
        new.exec_history = pushed(&old.program, &old.exec_history, self.cfg.exec_history);
        new.exec_count = old.exec_count.saturating_add(1);
        if fits {
            self.apply(&mut new, &o, Some(ts));
        } else {
            // Never the previous program's data for the new one.
            new.program = Program { exec_ns: Some(ts), ..Program::default() };
            new.truncated = false;
            new.status = if o.stat.is_none() { EnrichStatus::Gone } else { EnrichStatus::PidReused };
            match new.status {
                EnrichStatus::Gone => self.stats.gone += 1,
                _ => self.stats.pid_reused += 1,
            }
        }
        let moved = new.parent_pid != old.parent_pid;
        let new_ppid = new.parent_pid;
        new.entry_leader = None;
        if let Some(e) = self.tree.entries.get_mut(&k) {
            e.info = Arc::new(new);
        }
        if moved {
            self.reparent(k, new_ppid);
        }
        self.set_leader(k);
        self.exec_record(ev, k, Some(old))
    }

    fn exec_record(&self, ev: &KernelEvent, k: Key, previous: Option<Arc<ProcessInfo>>) -> ProcRecord {
        let mut rec = self.record(ev, k, self.tree.info(k).map_or(0, |i| i.pid));
        rec.previous = previous;
        rec.ancestors = self.ancestors_of(k, self.cfg.ancestor_depth);
        rec
    }

    fn on_exit<S: ProcSource + ?Sized>(
        &mut self,
        ev: &KernelEvent,
        pid: i32,
        tgid: i32,
        parent_tgid: i32,
        src: &mut S,
    ) -> ProcRecord {
        let ts = ev.timestamp_ns;
        if pid != tgid {
            let thread = self.tree.threads.remove(&pid);
            let k = match thread.map(|t| t.group).filter(|g| self.tree.entries.contains_key(g)) {
                Some(g) => Ok(g),
                None => self.resolve(ev, tgid, Exited::Always, src),
            };
            let k = match k {
                Ok(k) => k,
                Err(status) => return self.unresolved(ev, pid, tgid, status),
            };
            if thread.is_some() {
                if let Some(e) = self.tree.entries.get_mut(&k) {
                    e.threads = e.threads.saturating_sub(1);
                }
            }
            let mut rec = self.record(ev, k, pid);
            rec.ancestors = self.ancestors_of(k, self.cfg.ancestor_depth);
            rec.lifetime_ns = thread.map(|t| ts.saturating_sub(t.start_ns));
            return rec;
        }
        // A leader exits once: an exited entry of this pid is an earlier process.
        let k = match self.resolve(ev, tgid, Exited::Never, src) {
            Ok(k) => k,
            Err(status) => return self.unresolved(ev, pid, tgid, status),
        };
        // Reparenting: the kernel names the parent at exit.
        if parent_tgid > 0 && self.tree.info(k).is_some_and(|i| i.parent_pid != parent_tgid) {
            self.reparent(k, parent_tgid);
        }
        let mut rec = self.record(ev, k, pid);
        rec.ancestors = self.ancestors_of(k, self.cfg.ancestor_depth);
        rec.lifetime_ns = rec.process.as_ref().and_then(|p| p.start_ns).map(|s| ts.saturating_sub(s));
        self.retire(k);
        rec
    }
}
