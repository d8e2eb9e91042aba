//! Records for the writers' tests: a real process table over a simulated `/proc` (100 ticks a second, boot and
//! monotonic clocks equal).

use std::collections::HashMap;

use cnlink::wire::EventData;
use cnlink_procmon::procfs::parse::{parse_cmdline, parse_stat};
use cnlink_procmon::procfs::{EnrichStatus, Exe, StatusFields};
use cnlink_procmon::table::record::KernelEvent;
use cnlink_procmon::{HostIdentity, Observation, ProcRecord, ProcSource, ProcessTable, Snapshot, TableConfig, Wants};

pub(crate) const TICK: u64 = 10_000_000;

/// What each pid shows now.
#[derive(Default)]
pub(crate) struct Fake(pub(crate) HashMap<i32, Observation>);

impl ProcSource for Fake {
    fn observe(&mut self, pid: i32, _: Wants) -> Observation {
        self.0.get(&pid).cloned().unwrap_or_else(|| Observation::gone(pid, 0))
    }

    fn exists(&mut self, pid: i32) -> bool {
        self.0.contains_key(&pid)
    }

    fn snapshot(&mut self, _: Wants) -> Snapshot {
        let mut processes: Vec<Observation> = self.0.values().cloned().collect();
        processes.sort_by_key(|o| o.pid);
        Snapshot { ticks_per_second: 100, processes }
    }
}

/// A user process started at `start_ticks`, running `argv` (raw bytes) under `uid`.
pub(crate) fn process(pid: i32, ppid: i32, start_ticks: u64, name: &str, argv: &[&[u8]], uid: u32) -> Observation {
    let stat = format!("{pid} ({name}) S {ppid} {pid} {pid} 34817 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 0 0");
    let mut cmdline = Vec::new();
    for a in argv {
        cmdline.extend_from_slice(a);
        cmdline.push(0);
    }
    Observation {
        pid,
        status: EnrichStatus::Ok,
        boot_offset_ns: 0,
        stat: parse_stat(stat.as_bytes()),
        argv: Some(parse_cmdline(&cmdline, 1024, 32 * 1024, false)),
        exe: Some(Exe {
            path: format!("/usr/bin/{name}").into_bytes(),
            deleted: false,
            memfd: false,
            truncated: false,
        }),
        cwd: None,
        status_fields: Some(StatusFields { ruid: uid, euid: uid, rgid: 100, egid: 100, nspid: vec![pid] }),
        cgroup: None,
        pid_ns: Some(4026531836),
        mnt_ns: Some(4026531832),
    }
}

/// A table holding init (1) and a shell (100), and its `/proc`.
pub(crate) fn machine() -> (ProcessTable, Fake) {
    let mut fake = Fake::default();
    fake.0.insert(1, process(1, 0, 0, "init", &[b"/sbin/init"], 0));
    fake.0.insert(100, process(100, 1, 1, "bash", &[b"bash"], 1000));
    let host = HostIdentity::new("0123456789abcdef0123456789abcdef", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5");
    let mut t = ProcessTable::new(host, TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    (t, fake)
}

/// The record of `data` at `ts`.
pub(crate) fn handle(t: &mut ProcessTable, fake: &mut Fake, ts: u64, data: EventData) -> ProcRecord {
    t.handle(&KernelEvent { seq: 7, cpu: 1, timestamp_ns: ts, data }, fake)
}

/// The exit of `pid` (child of `parent`) with wait status `code`.
pub(crate) fn exit(pid: i32, parent: i32, code: u32) -> EventData {
    EventData::Exit {
        process_pid: pid,
        process_tgid: pid,
        exit_code: code,
        exit_signal: 17,
        parent_pid: parent,
        parent_tgid: parent,
    }
}
