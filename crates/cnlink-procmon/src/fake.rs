//! A simulated `/proc` and simulated time for deterministic tests (100 ticks a second, boot and monotonic clocks
//! equal), and event builders.
#![allow(dead_code)]

use std::collections::HashMap;

use cnlink::wire::EventData;

use crate::identity::HostIdentity;
use crate::procfs::parse::{parse_cmdline, parse_stat};
use crate::procfs::{CgroupFile, EnrichStatus, Exe, Observation, ProcSource, Snapshot, StatusFields, Wants};
use crate::table::record::KernelEvent;
use crate::table::{ProcessTable, TableConfig};

pub(crate) const MS: u64 = 1_000_000;
pub(crate) const TICK: u64 = 10 * MS;

/// A simulated `/proc`: what each pid shows now.
#[derive(Default, Clone)]
pub(crate) struct FakeProc {
    pub(crate) procs: HashMap<i32, Observation>,
    pub(crate) reads: u32,
}

impl ProcSource for FakeProc {
    fn observe(&mut self, pid: i32, wants: Wants) -> Observation {
        self.reads += 1;
        let Some(mut o) = self.procs.get(&pid).cloned() else { return Observation::gone(pid, 0) };
        if !wants.program {
            o.argv = None;
            o.exe = None;
        }
        if !wants.status {
            o.status_fields = None;
        }
        if !wants.cgroup {
            o.cgroup = None;
        }
        o
    }

    fn exists(&mut self, pid: i32) -> bool {
        self.procs.contains_key(&pid)
    }

    fn snapshot(&mut self, _: Wants) -> Snapshot {
        let mut processes: Vec<Observation> = self.procs.values().cloned().collect();
        processes.sort_by_key(|o| o.pid);
        Snapshot { ticks_per_second: 100, processes }
    }
}

/// Builds an observation of a user process.
pub(crate) struct P {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) start_ns: u64,
    pub(crate) name: &'static str,
    pub(crate) argv: &'static [&'static str],
    pub(crate) sid: i32,
    pub(crate) tty: i32,
    pub(crate) cgroup: &'static str,
    pub(crate) nspid: Vec<i32>,
    pub(crate) kthread: bool,
}

impl P {
    pub(crate) fn new(pid: i32, ppid: i32, start_ns: u64, name: &'static str, argv: &'static [&'static str]) -> P {
        P { pid, ppid, start_ns, name, argv, sid: 1, tty: 0, cgroup: "0::/\n", nspid: vec![pid], kthread: false }
    }

    pub(crate) fn obs(&self) -> Observation {
        let flags = if self.kthread { 0x0020_0000 } else { 0 };
        let stat = format!(
            "{} ({}) S {} {} {} {} -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0",
            self.pid,
            self.name,
            self.ppid,
            self.pid,
            self.sid,
            self.tty,
            self.start_ns / TICK
        );
        let mut cmdline = Vec::new();
        for a in self.argv {
            cmdline.extend_from_slice(a.as_bytes());
            cmdline.push(0);
        }
        Observation {
            pid: self.pid,
            status: EnrichStatus::Ok,
            boot_offset_ns: 0,
            stat: parse_stat(stat.as_bytes()),
            argv: Some(parse_cmdline(&cmdline, 1024, 32 * 1024, false)),
            exe: Some(Exe {
                path: format!("/usr/bin/{}", self.name).into_bytes(),
                deleted: false,
                memfd: false,
                truncated: false,
            }),
            cwd: None,
            status_fields: Some(StatusFields {
                ruid: 1000,
                euid: 1000,
                rgid: 100,
                egid: 100,
                nspid: self.nspid.clone(),
            }),
            cgroup: Some(CgroupFile { bytes: self.cgroup.as_bytes().to_vec(), truncated: false }),
            pid_ns: Some(4026531836),
            mnt_ns: Some(4026531832),
        }
    }
}

pub(crate) fn host() -> HostIdentity {
    HostIdentity::new("0123456789abcdef0123456789abcdef", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5")
}

/// A machine with init (1), kthreadd (2) and a shell (100, child of 1).
pub(crate) fn machine() -> (ProcessTable, FakeProc) {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["/sbin/init"]).obs());
    fake.procs.insert(2, P { kthread: true, ..P::new(2, 0, 0, "kthreadd", &[]) }.obs());
    fake.procs.insert(100, P::new(100, 1, TICK, "bash", &["bash"]).obs());
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    (t, fake)
}

pub(crate) fn ev(ts: u64, data: EventData) -> KernelEvent {
    KernelEvent { seq: (ts / MS) as u32, cpu: 0, timestamp_ns: ts, data }
}

pub(crate) fn fork(ts: u64, parent: i32, child: i32) -> KernelEvent {
    ev(ts, EventData::Fork { parent_pid: parent, parent_tgid: parent, child_pid: child, child_tgid: child })
}

pub(crate) fn thread(ts: u64, group: i32, tid: i32) -> KernelEvent {
    ev(ts, EventData::Fork { parent_pid: group, parent_tgid: group, child_pid: tid, child_tgid: group })
}

pub(crate) fn exec(ts: u64, pid: i32) -> KernelEvent {
    ev(ts, EventData::Exec { process_pid: pid, process_tgid: pid })
}

pub(crate) fn exit(ts: u64, pid: i32, tgid: i32, parent: i32) -> KernelEvent {
    ev(
        ts,
        EventData::Exit {
            process_pid: pid,
            process_tgid: tgid,
            exit_code: 0,
            exit_signal: 17,
            parent_pid: parent,
            parent_tgid: parent,
        },
    )
}
