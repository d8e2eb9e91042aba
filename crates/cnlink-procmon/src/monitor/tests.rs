//! The monitor end to end without the kernel: synthetic datagrams through the replay source, a simulated
//! `/proc`, simulated time.

use cnlink::wire::{datagram, CbId, CnMsgHdr, EventData, EventMask, ProcEvent};

use super::*;
use crate::fake::*;
use crate::filter::ProcFilter;
use crate::loss::{LossCause, LostEvents};
use crate::replay::{ReplayEvents, ReplayInput};
use crate::select::Selection;
use crate::table::record::ProcRecord;

const OWN: i32 = 4242;

fn dgram(seq: u32, ts: u64, data: EventData) -> ReplayInput {
    let mut buf = [0u8; 64];
    let n = ProcEvent { cpu: 0, timestamp_ns: ts, data }.emit(&mut buf).unwrap();
    let hdr = CnMsgHdr { id: CbId::PROC, seq, ..Default::default() };
    ReplayInput::Datagram { timestamp_ns: ts, from_port: 0, bytes: datagram(hdr, &buf[..n], 0).unwrap() }
}

fn forked(seq: u32, ts: u64, parent: i32, child: i32) -> ReplayInput {
    dgram(seq, ts, EventData::Fork { parent_pid: parent, parent_tgid: parent, child_pid: child, child_tgid: child })
}

fn execd(seq: u32, ts: u64, pid: i32) -> ReplayInput {
    dgram(seq, ts, EventData::Exec { process_pid: pid, process_tgid: pid })
}

fn exited(seq: u32, ts: u64, pid: i32, parent: i32) -> ReplayInput {
    dgram(
        seq,
        ts,
        EventData::Exit {
            process_pid: pid,
            process_tgid: pid,
            exit_code: 0,
            exit_signal: 17,
            parent_pid: parent,
            parent_tgid: parent,
        },
    )
}

/// A monitor over `inputs` and `fake`, configured by `b`; returns everything it yields, and its counters.
fn run(
    inputs: Vec<ReplayInput>,
    fake: FakeProc,
    b: impl FnOnce(MonitorBuilder) -> MonitorBuilder,
) -> (Vec<MonitorItem>, MonitorCounters) {
    let builder = Monitor::builder()
        .source(ReplayEvents::new(inputs, EventMask::ALL, false))
        .proc_source(fake)
        .host(host())
        .own_pid(Some(OWN));
    let mut m = b(builder).build().unwrap();
    let items: Vec<MonitorItem> = m.by_ref().map(Result::unwrap).collect();
    (items, m.counters())
}

fn records(items: &[MonitorItem]) -> Vec<&ProcRecord> {
    items
        .iter()
        .filter_map(|i| match i {
            MonitorItem::Record(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The simulated machine of the table's tests, and 200 forked by the shell, exec'ing `sleep 1`.
fn machine_with_child() -> FakeProc {
    let (_, mut fake) = machine();
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "sleep", &["sleep", "1"]).obs());
    fake
}

#[test]
fn a_chain_is_enriched_in_order_with_its_losses() {
    let inputs = vec![
        forked(1, 2 * TICK, 100, 200),
        // The monitor's own thread: counted, not shown.
        dgram(2, 2 * TICK, EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: OWN + 1, child_tgid: OWN }),
        execd(3, 2 * TICK + MS, 200),
        // Three messages lost before seq 7.
        exited(7, 5 * TICK, 200, 100),
        ReplayInput::Lost {
            loss: LostEvents { cpu: Some(0), ..LostEvents::exact(LossCause::SeqGap, 3, 5 * TICK) },
            before: Some((0, 7)),
        },
    ];
    let (items, c) = run(inputs, machine_with_child(), |b| b);
    assert_eq!(items.len(), 4, "{items:#?}");
    let rs = records(&items);
    let (fork, exec, exit) = (rs[0], rs[1], rs[2]);
    assert!(matches!(items[2], MonitorItem::Lost(l) if l.count == Some(3) && l.cause == LossCause::SeqGap));
    assert!(matches!(exit.event.data, EventData::Exit { .. }), "the loss comes before the message after it");
    let id = fork.entity_id.unwrap();
    assert_eq!((exec.entity_id, exit.entity_id), (Some(id), Some(id)));
    assert_eq!(fork.parent_entity_id, Some(crate::EntityId::from_stat(&host(), 100, 1)));
    let p = exec.process.as_ref().unwrap();
    assert_eq!(p.program.argv.as_ref().unwrap().args().collect::<Vec<_>>(), [&b"sleep"[..], b"1"]);
    assert_eq!(exec.ancestors.iter().map(|a| a.pid).collect::<Vec<_>>(), [100, 1]);
    assert_eq!(exit.lifetime_ns, Some(3 * TICK));
    assert_eq!(c.own, 1);
    assert_eq!(c.received[EventKind::Fork.index()], 1);
    assert_eq!(c.shown.iter().sum::<u64>(), 3);
    assert_eq!((c.losses.seq_gap, c.losses.per_cpu.clone()), (3, vec![3]));
    assert_eq!(c.source.datagrams, 4);
}

#[test]
fn selection_and_filters_decide_what_is_shown() {
    let mut fake = machine_with_child();
    fake.procs.insert(300, P::new(300, 1, 3 * TICK, "cron", &["cron"]).obs());
    let inputs = vec![forked(1, 2 * TICK, 100, 200), execd(2, 2 * TICK + MS, 200), execd(3, 3 * TICK, 300)];
    // Only execs, of 100 and its descendants: the child's exec, not cron's.
    let (items, c) = run(inputs.clone(), fake.clone(), |b| {
        b.events(Selection::parse("exec").unwrap()).filter(ProcFilter::new().pids(&[100], true))
    });
    let rs = records(&items);
    assert_eq!(rs.len(), 1);
    assert!(matches!(rs[0].event.data, EventData::Exec { process_tgid: 200, .. }));
    assert_eq!((c.received.iter().sum::<u64>(), c.shown.iter().sum::<u64>()), (3, 1));
    // By name (argv[0] or comm), and by the process group the source gives now.
    let (items, _) = run(inputs.clone(), fake.clone(), |b| b.filter(ProcFilter::new().names(&["cro?"])));
    let rs = records(&items);
    assert_eq!(rs.len(), 1);
    assert!(matches!(rs[0].event.data, EventData::Exec { process_tgid: 300, .. }));
    let (items, _) = run(inputs, fake, |b| b.filter(ProcFilter::new().pgrp(300)));
    let rs = records(&items);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].process.as_ref().unwrap().pid, 300);
}

#[test]
fn a_queue_loss_replaces_the_events_the_live_monitor_dropped() {
    let inputs = vec![
        forked(1, 2 * TICK, 100, 200),
        execd(2, 2 * TICK + MS, 200),
        exited(3, 5 * TICK, 200, 100),
        ReplayInput::Lost { loss: LostEvents::exact(LossCause::Queue, 2, 6 * TICK), before: None },
    ];
    let (items, c) = run(inputs, machine_with_child(), |b| b);
    assert_eq!(items.len(), 2, "{items:#?}");
    assert!(matches!(&items[0], MonitorItem::Record(r) if matches!(r.event.data, EventData::Fork { .. })));
    assert!(matches!(items[1], MonitorItem::Lost(l) if l.cause == LossCause::Queue && l.count == Some(2)));
    assert_eq!(c.losses.queue, 2);
}

#[test]
fn the_kernel_is_asked_for_what_is_shown_and_what_the_table_and_filters_need() {
    let exec = Selection::parse("exec").unwrap();
    assert_eq!(Monitor::builder().events(exec).kernel_mask(), TRACKING);
    assert_eq!(Monitor::builder().events(exec).enrich(false).kernel_mask(), EventMask::EXEC);
    let desc = Monitor::builder().events(exec).enrich(false).filter(ProcFilter::new().pids(&[1], true));
    assert_eq!(desc.kernel_mask(), EventMask::EXEC | EventMask::FORK | EventMask::EXIT);
    assert_eq!(Monitor::builder().kernel_mask(), EventMask::ALL);
}

#[test]
fn without_enrichment_nothing_is_read() {
    let fake = machine_with_child();
    let inputs = vec![forked(1, 2 * TICK, 100, 200), execd(2, 2 * TICK + MS, 200)];
    let (items, c) = run(inputs, fake, |b| b.enrich(false).proc_source(crate::procfs::NoProc));
    let rs = records(&items);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].entity_id_source, Some(crate::EntityIdSource::ForkEvent));
    assert_eq!(rs[1].entity_id, rs[0].entity_id);
    assert!(rs[1].process.as_ref().unwrap().program.argv.is_none());
    assert_eq!(c.table.live, 1, "no snapshot: only the child");
}
