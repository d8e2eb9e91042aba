//! The process model on the golden recordings (`tests/data/` of the workspace, made on a real machine): a monitor
//! fed by [`ReplayEvents`] and [`RecordedProc`] instead of the kernel and `/proc`, deterministic and without root.
//! Loss, pid reuse and ancestry, exactly.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use cnlink::wire::{EventData, EventMask, ExitStatus};
use cnlink_capture::{Block, LossKind, Reader, Record};
use cnlink_procmon::capture::{RecordingItem, RecordingReader};
use cnlink_procmon::{LossCause, Monitor, MonitorItem, ProcRecord, RecordedProc, ReplayEvents};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

/// What a replay of a golden yields, and the monitor after it (its table, its counters).
struct Replayed {
    items: Vec<MonitorItem>,
    monitor: Monitor,
    mismatches: u64,
}

fn replay(name: &str) -> Replayed {
    let path = golden(name);
    let head = RecordingReader::head(&path).unwrap();
    let session = head.session.clone().expect("a session record");
    let ms = session.monitor.clone().expect("a monitor's settings");
    let inputs: Vec<_> = RecordingReader::new([&path]).filter_map(RecordingItem::into_input).collect();
    let answers: Vec<_> = RecordingReader::new([&path]).filter_map(RecordingItem::into_answer).collect();
    let proc = RecordedProc::new(answers);
    let mismatches = proc.mismatches();
    let events = ReplayEvents::new(inputs, EventMask(ms.kernel_mask), ms.kernel_filtered);
    let mut monitor = Monitor::builder()
        .source(events)
        .proc_source(proc)
        .own_pid(Some(session.pid))
        .host(session.host().expect("the recorded host"))
        .build()
        .unwrap();
    let mut items = Vec::new();
    while !monitor.is_finished() {
        monitor.recv(&mut items, Some(std::time::Duration::from_secs(5))).unwrap();
    }
    Replayed { items, monitor, mismatches: mismatches.load(Ordering::Relaxed) }
}

fn records(r: &Replayed) -> Vec<&ProcRecord> {
    r.items
        .iter()
        .filter_map(|i| match i {
            MonitorItem::Record(r) => Some(r),
            MonitorItem::Lost(_) => None,
        })
        .collect()
}

fn argv(r: &ProcRecord) -> Vec<String> {
    let a = r.process.as_ref().and_then(|p| p.program.argv.clone());
    a.map_or(Vec::new(), |a| a.args().map(|x| String::from_utf8_lossy(x).into_owned()).collect())
}

fn exe(r: &ProcRecord) -> Option<String> {
    r.process.as_ref()?.program.exe.as_ref().map(|e| e.path.to_str_lossy().into_owned())
}

fn is_exec(r: &ProcRecord) -> bool {
    matches!(r.event.data, EventData::Exec { .. })
}

fn exit_code(r: &ProcRecord) -> Option<u32> {
    match r.event.data {
        EventData::Exit { exit_code, process_pid, process_tgid, .. } if process_pid == process_tgid => {
            match ExitStatus::from_raw(exit_code) {
                ExitStatus::Exited(c) => Some(c.into()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn pid(r: &ProcRecord) -> i32 {
    r.event.data.subject().map_or(-1, |(pid, _)| pid)
}

#[test]
fn chain_every_answer_used_and_the_ancestry_kept() {
    let r = replay("chain.pcapng");
    assert_eq!(r.mismatches, 0, "the replay asked what the recording holds");
    let recs = records(&r);
    let root = recs.iter().find(|r| is_exec(r) && argv(r).last().map(String::as_str) == Some("cnlink-golden-chain"));
    let root = root.expect("the chain's exec");
    let root_id = root.entity_id.unwrap();
    let programs: Vec<(String, Option<u32>)> = recs
        .iter()
        .filter(|r| is_exec(r) || exit_code(r).is_some())
        .map(|r| (argv(r).join(" "), exit_code(r)))
        .collect();
    let chain = "sh -c sh -c \"exit 7\"; ls / >/dev/null; exit 3 cnlink-golden-chain";
    assert_eq!(
        programs,
        [
            (chain.to_string(), None),
            ("sh -c exit 7".into(), None),
            ("sh -c exit 7".into(), Some(7)),
            ("ls /".into(), None),
            ("ls /".into(), Some(0)),
            (chain.to_string(), Some(3)),
        ]
    );
    // Each child: its parent and first ancestor is the chain, then the chain's own ancestors.
    for c in recs.iter().filter(|r| is_exec(r) && r.entity_id != Some(root_id)) {
        assert_eq!(c.parent_entity_id, Some(root_id));
        let ids: Vec<_> = c.ancestors.iter().map(|a| a.entity_id).collect();
        let mut want = vec![root_id];
        want.extend(root.ancestors.iter().map(|a| a.entity_id));
        assert_eq!(ids, want);
    }
    assert_eq!(root.ancestors.last().map(|a| a.pid), Some(1), "up to init, from the snapshot");
    // Every process of the chain has exited; the table keeps them for late thread exits.
    let table = r.monitor.table();
    for c in recs.iter().filter(|r| is_exec(r)) {
        assert!(table.get(pid(c)).is_none());
        assert_eq!(table.lookup(pid(c)).map(|p| p.entity_id), c.entity_id);
    }
    assert_eq!(r.monitor.counters().losses.total(), 0);
}

#[test]
fn storm_loss_counted_exactly() {
    let r = replay("storm-loss.pcapng");
    assert_eq!(r.mismatches, 0);
    // What the recording says was lost.
    let bytes = std::fs::read(golden("storm-loss.pcapng")).unwrap();
    let (mut gaps, mut overruns) = (Vec::new(), 0);
    for b in Reader::new(&bytes) {
        match b.unwrap() {
            Block::Record(Record::Loss(l)) if l.kind == LossKind::SeqGap => gaps.push(l.count.unwrap()),
            Block::Record(Record::Loss(l)) if l.kind == LossKind::Overrun => overruns += 1,
            _ => {}
        }
    }
    assert!(!gaps.is_empty() && overruns > 0);
    let lost: Vec<u64> = r
        .items
        .iter()
        .filter_map(|i| match i {
            MonitorItem::Lost(l) => {
                assert!(l.exact && l.cause == LossCause::SeqGap, "{l:?}");
                l.count
            }
            MonitorItem::Record(_) => None,
        })
        .collect();
    assert_eq!(lost, gaps, "every gap, in order, with its exact count");
    let c = r.monitor.counters();
    assert_eq!(c.losses.seq_gap, gaps.iter().sum::<u64>());
    assert_eq!((c.losses.total(), c.overruns), (c.losses.seq_gap, overruns));
    // The storm's threads that were received belong to its process, under its id.
    let recs = records(&r);
    let storm = recs.iter().find(|r| is_exec(r) && argv(r).contains(&"cnlink-golden-storm".to_string())).unwrap();
    let threads: Vec<&&ProcRecord> = recs.iter().filter(|r| r.tid.is_some_and(|t| t != pid(storm))).collect();
    assert!(!threads.is_empty());
    assert!(threads.iter().all(|t| t.entity_id == storm.entity_id));
}

#[test]
fn pid_reuse_two_ids_and_nothing_of_the_first_in_the_second() {
    let r = replay("pid-reuse.pcapng");
    assert_eq!(r.mismatches, 0);
    let recs = records(&r);
    let first = recs.iter().find(|r| is_exec(r) && argv(r).contains(&"cnlink-golden-first".to_string())).unwrap();
    let n = pid(first);
    let of_n: Vec<&&ProcRecord> = recs.iter().filter(|r| pid(r) == n).collect();
    let mut ids: Vec<_> = of_n.iter().filter_map(|r| r.entity_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2, "pid {n}: two processes, two ids");
    let second: Vec<&&&ProcRecord> = of_n.iter().filter(|r| r.entity_id != first.entity_id).collect();
    assert_eq!(second.len(), 3, "fork, exec, exit of the second");
    for s in &second {
        assert!(!argv(s).contains(&"cnlink-golden-first".to_string()), "{:?}", argv(s));
        assert_ne!(exe(s).as_deref(), Some("/usr/bin/dash"));
        let leaked = |h: &cnlink_procmon::Program| {
            h.argv.as_ref().is_some_and(|a| a.args().any(|x| x == b"cnlink-golden-first"))
        };
        assert!(!s.process.as_ref().unwrap().exec_history.iter().any(leaked));
    }
    assert_eq!((argv(second[2]), exe(second[2])), (vec!["sleep".into(), "0.1".into()], Some("/usr/bin/sleep".into())));
    assert_eq!(exit_code(second[2]), Some(0));
    let first_exit = of_n.iter().find(|r| r.entity_id == first.entity_id && exit_code(r).is_some()).unwrap();
    assert_eq!(exit_code(first_exit), Some(5));
    assert_eq!(r.monitor.table().lookup(n).map(|p| p.entity_id), second[0].entity_id, "the table holds the second");
}
