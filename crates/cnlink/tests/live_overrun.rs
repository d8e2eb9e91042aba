//! A forced overrun: a listener with the smallest receive buffer stalls through a storm of threads, and the loss
//! it reports must equal what it is missing, as seen by an independent raw socket that keeps up.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cnlink::proc::{Loss, ProcEvents, ProcItem, ProcOptions};
use cnlink::socket::{Protocol, RecvBatch, Socket};
use cnlink::wire::{CbId, CnMsgs, NlMessages, ProcEvent, CN_IDX_PROC};

/// Every proc message `(cpu, seq)` a raw socket with a large buffer receives until stopped.
fn reference(stop: Arc<AtomicBool>, ready: std::sync::mpsc::Sender<()>) -> (Vec<(u32, u32)>, u64) {
    let sock = Socket::open(Protocol::Connector).unwrap();
    sock.set_recv_buffer(64 << 20).unwrap();
    sock.add_membership(CN_IDX_PROC).unwrap();
    ready.send(()).unwrap();
    let mut batch = RecvBatch::new(256, 4096);
    let (mut seen, mut overruns) = (Vec::new(), 0);
    while !stop.load(Ordering::Relaxed) {
        if !sock.wait_readable(Some(Duration::from_millis(20))).unwrap() {
            continue;
        }
        match sock.recv_batch(&mut batch, false) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                overruns += 1;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("{e}"),
        }
        for (_, d) in batch.iter() {
            for nl in NlMessages::new(d).flatten() {
                for cn in CnMsgs::new(nl.payload()).flatten() {
                    if cn.id() == CbId::PROC {
                        let ev = ProcEvent::parse(cn.data()).unwrap();
                        seen.push((ev.cpu, cn.seq()));
                    }
                }
            }
        }
    }
    (seen, overruns)
}

/// Creates and joins a thread on every CPU this process may run on (a fork and an exit event from each).
fn on_every_cpu() {
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    for cpu in (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)) {
        std::thread::spawn(move || {
            let mut one = rustix::thread::CpuSet::new();
            one.set(cpu);
            rustix::thread::sched_setaffinity(None, &one).unwrap();
            std::thread::spawn(|| ()).join().unwrap();
        })
        .join()
        .unwrap();
    }
}

#[test]
fn forced_overrun_reports_exactly_what_is_missing() {
    if !common::live_kernel() {
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let ref_thread = std::thread::spawn({
        let stop = stop.clone();
        move || reference(stop, tx)
    });
    rx.recv().unwrap();

    // The smallest buffer the kernel allows (it rounds up to SOCK_MIN_RCVBUF): only a couple of messages fit.
    let opts = ProcOptions { recv_buffer: 1, ..Default::default() };
    let mut stalled = ProcEvents::subscribe(opts).unwrap();

    // Everything the stalled listener yields, from the subscription's ack on.
    let mut items = Vec::new();
    // A baseline on every CPU: the gaps the storm makes are counted from each CPU's last message before it.
    on_every_cpu();
    while stalled.recv_items(&mut items, Some(Duration::from_millis(100))).unwrap() > 0 {}

    // A storm of threads while `stalled` does not read.
    let workers: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| (0..1500).for_each(|_| std::thread::spawn(|| ()).join().unwrap())))
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    // Messages from every CPU after the storm, read as they come: each CPU's gap shows.
    for _ in 0..3 {
        stalled.recv_items(&mut items, Some(Duration::ZERO)).unwrap();
        on_every_cpu();
    }
    while stalled.recv_items(&mut items, Some(Duration::from_millis(300))).unwrap() > 0 {}

    let (mut got, mut lost, mut overruns) = (HashSet::new(), 0u64, 0);
    for item in &items {
        match *item {
            ProcItem::Event(e) => {
                got.insert((e.cpu, e.seq));
            }
            ProcItem::Ack { cpu, seq, .. } => {
                got.insert((cpu, seq));
            }
            // A lower bound (a CPU without a baseline at the overrun) still counts exactly the gaps it saw.
            ProcItem::Lost(loss) => lost += loss.count().expect("an unfiltered stream always has a count"),
            ProcItem::Overrun => overruns += 1,
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, ref_overruns) = ref_thread.join().unwrap();
    assert_eq!(ref_overruns, 0, "the reference listener must not lose anything for the comparison to hold");
    assert!(
        overruns > 0 && lost > 100,
        "the storm must overrun the stalled listener: lost {lost}, overruns {overruns}"
    );
    assert_eq!(stalled.stats().lost, lost);

    // Per CPU, the window the stalled listener can account for: its first to its last message.
    let mut window: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    for &(cpu, seq) in &got {
        let w = window.entry(cpu).or_insert((seq, seq));
        w.0 = w.0.min(seq);
        w.1 = w.1.max(seq);
    }
    let (mut missing, mut ref_in_window) = (0u64, BTreeMap::<u32, u64>::new());
    for &(cpu, seq) in &seen {
        let Some(&(lo, hi)) = window.get(&cpu) else { continue };
        if (lo..=hi).contains(&seq) {
            *ref_in_window.entry(cpu).or_default() += 1;
            missing += u64::from(!got.contains(&(cpu, seq)));
        }
    }
    for (cpu, (lo, hi)) in &window {
        assert_eq!(ref_in_window[cpu], u64::from(hi - lo) + 1, "the reference saw every message of cpu {cpu}");
    }
    assert_eq!(lost, missing, "the reported loss is exactly what the reference saw and the stalled listener did not");
    eprintln!("lost {lost} = missing {missing}; received {}; overruns {overruns}", got.len());
}

#[test]
fn a_kernel_filtered_overrun_is_counted_from_the_socket_drop_counter() {
    if !common::live_kernel() {
        return;
    }
    let opts = ProcOptions { events: cnlink::wire::EventMask::EXIT, recv_buffer: 1, ..Default::default() };
    let mut stalled = ProcEvents::subscribe(opts).unwrap();
    assert_eq!(stalled.kernel_filtered(), common::kernel_at_least(6, 6));
    (0..1500).for_each(|_| std::thread::spawn(|| ()).join().unwrap());
    let (mut lost, mut overruns, mut items) = (0u64, 0u64, Vec::new());
    loop {
        items.clear();
        if stalled.recv_items(&mut items, Some(Duration::from_millis(300))).unwrap() == 0 {
            break;
        }
        for item in &items {
            match *item {
                ProcItem::Lost(loss) => {
                    if stalled.kernel_filtered() {
                        assert!(matches!(loss, Loss::Exact(_)), "the drop counter is exact: {loss:?}");
                    }
                    lost += loss.count().expect("a count");
                }
                ProcItem::Overrun => overruns += 1,
                _ => {}
            }
        }
    }
    assert!(overruns > 0 && lost > 0, "the burst must overrun the stalled listener: lost {lost}, overruns {overruns}");
    assert_eq!(stalled.stats().lost, lost);
    if stalled.kernel_filtered() {
        // Every datagram the kernel dropped at the socket was reported, no more.
        assert_eq!(stalled.socket().drops().unwrap().map(u64::from), Some(lost));
    }
}
