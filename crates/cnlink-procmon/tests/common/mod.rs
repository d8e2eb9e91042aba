//! Helpers shared by the live tests: the root skip rule, and a feeder thread that keeps a process table from a
//! real proc connector subscription.
#![allow(dead_code)]

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
use cnlink_procmon::{HostIdentity, LiveProc, ProcRecord, ProcSource, ProcessTable, TableConfig, Wants};

/// True when the test may subscribe to the proc connector and write to `/proc/sys` and cgroups; otherwise
/// prints why it is skipped (and panics under `CI=true`, where a skip is a failure).
pub(crate) fn live_kernel(test: &str) -> bool {
    let reason = if !rustix::process::geteuid().is_root() {
        Some("needs root")
    } else if !std::fs::read_to_string("/proc/net/connector").is_ok_and(|s| s.contains(" 1:1")) {
        Some("needs the initial network namespace and CONFIG_PROC_EVENTS (no cn_proc in /proc/net/connector)")
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test}: cannot run under CI: {r}"),
        Some(r) => {
            eprintln!("{test}: skipped: {r}");
            false
        }
    }
}

/// What the feeder thread shares: the table and every record it produced.
pub(crate) struct Shared {
    pub(crate) table: ProcessTable,
    pub(crate) records: Vec<ProcRecord>,
}

/// A thread that subscribes, seeds a table from a snapshot, then feeds it every event.
pub(crate) struct Feeder {
    pub(crate) shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Feeder {
    /// Subscribes and seeds; returns once the table holds the snapshot (events from then on are fed).
    pub(crate) fn start() -> Feeder {
        let mut events = ProcEvents::subscribe(ProcOptions::default()).expect("subscribe");
        let mut proc = LiveProc::default();
        let host = HostIdentity::read().expect("host identity");
        let mut table = ProcessTable::new(host, TableConfig::default());
        table.seed(&proc.snapshot(Wants::ALL));
        let shared = Arc::new(Mutex::new(Shared { table, records: Vec::new() }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            let mut items = Vec::new();
            while !st.load(Ordering::Acquire) {
                items.clear();
                events.recv_items(&mut items, Some(Duration::from_millis(50))).expect("receive");
                let mut g = s.lock().unwrap();
                for item in &items {
                    match item {
                        ProcItem::Event(ev) => {
                            let rec = g.table.handle(&ev.into(), &mut proc);
                            if g.records.len() < 2_000_000 {
                                g.records.push(rec);
                            }
                        }
                        ProcItem::Lost { .. } => g.table.note_loss(),
                        _ => {}
                    }
                }
            }
        });
        Feeder { shared, stop, handle: Some(handle) }
    }

    /// Waits until `done` holds for the records so far (at most `timeout`); returns whether it did.
    pub(crate) fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&Shared) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.shared.lock().unwrap()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The records about process `pid` (leader events only).
    pub(crate) fn records_of(&self, pid: i32) -> Vec<ProcRecord> {
        let g = self.shared.lock().unwrap();
        g.records
            .iter()
            .filter(|r| r.tid.is_none() && r.process.as_ref().is_some_and(|p| p.pid == pid))
            .cloned()
            .collect()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// True when `r` is the exit of the process `pid` (its leader).
pub(crate) fn is_exit_of(r: &ProcRecord, pid: i32) -> bool {
    matches!(r.event.data, cnlink::wire::EventData::Exit { process_pid, process_tgid, .. }
        if process_pid == pid && process_tgid == pid)
}

/// True when `r` is an exec of `pid`.
pub(crate) fn is_exec_of(r: &ProcRecord, pid: i32) -> bool {
    matches!(r.event.data, cnlink::wire::EventData::Exec { process_tgid, .. } if process_tgid == pid)
}

/// The arguments of a record's process, lossily as strings.
pub(crate) fn argv_of(r: &ProcRecord) -> Vec<String> {
    r.process
        .as_ref()
        .and_then(|p| p.program.argv.as_ref())
        .map_or(Vec::new(), |a| a.args().map(|x| String::from_utf8_lossy(x).into_owned()).collect())
}

/// Kills and reaps a child (ignoring that it may have exited already).
pub(crate) fn reap(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// The children of `pid` (`/proc/PID/task/PID/children`).
pub(crate) fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_ascii_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}
