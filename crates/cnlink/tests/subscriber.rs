//! The proc subscription engine against a scripted fake kernel, in simulated time: acks lost and late, the 6.6
//! filter and its fallback, the listener count of old kernels, when the per-CPU resync runs, and how exact the
//! losses it reports are. No root, no real kernel.

mod fake_kernel;

use std::time::Duration;

use cnlink::engine::subscriber::{PROBE_WAIT, RESYNC_INTERVAL};
use cnlink::engine::{Failure, KernelRelease, Loss, ProcItem, State, SubscriberConfig};
use cnlink::wire::{EventData, EventMask, McastOp, ProcInput};

use fake_kernel::{config, Era, FakeKernel, Harness};

const ACK_TIMEOUT: Duration = Duration::from_secs(1);

fn old_release() -> Option<KernelRelease> {
    Some(KernelRelease { major: 5, minor: 15 })
}

/// The CPUs the resync requests of the last `n` requests came from.
fn resync_cpus(h: &Harness, n: usize) -> Vec<u32> {
    let r = &h.kernel.requests;
    r[r.len() - n..].iter().map(|&(_, cpu, _)| cpu).collect()
}

#[test]
fn a_6_6_kernel_subscribes_then_resyncs_each_other_cpu_back_to_back() {
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 4), config(4), 1000);
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(h.kernel.listeners, 1);
    // The LISTEN (from CPU 0), then LISTENs from CPUs 1, 2, 3, all handed out together before any of their acks
    // was seen.
    assert_eq!(h.bursts[..2], [1, 3]);
    assert_eq!(resync_cpus(&h, 3), [1, 2, 3]);
    assert!(h.kernel.requests.iter().all(|r| r.2 == ProcInput::Legacy(McastOp::Listen)));
    // Their acks come back on their CPUs and are matched as they come.
    let acks: Vec<u32> =
        h.items.iter().filter_map(|i| if let ProcItem::Ack { cpu, .. } = i { Some(*cpu) } else { None }).collect();
    assert_eq!(acks, [0, 1, 2, 3]);
    assert_eq!(h.engine.counters().own_acks, 4);
    assert_eq!(h.engine.counters().resyncs, 1);
    assert_eq!(h.kernel.listeners, 1, "a repeated LISTEN from one socket counts once on 6.6+");
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn an_old_kernel_gets_one_listen_and_its_count_goes_back_to_zero() {
    let mut kernel = FakeKernel::new(Era::Pre66, 4);
    kernel.listeners = 1; // someone else listens already
    let mut h = Harness::start(kernel, SubscriberConfig { kernel: old_release(), ..config(4) }, 8);
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(h.kernel.listeners, 2);
    // Overruns: no resync, no resend; the gaps show as events arrive.
    for round in 0..3 {
        h.kernel.forks(round % 4, 20);
        h.pump();
        h.advance(RESYNC_INTERVAL * 2);
    }
    assert_eq!(h.engine.counters().overruns, 3);
    assert_eq!(h.kernel.listens(), 1, "every LISTEN counts before 6.6: only one is ever sent");
    h.close();
    assert_eq!(h.kernel.listeners, 1, "our LISTEN undone, the other listener's left alone");
}

#[test]
fn an_unknown_release_never_leaves_the_count_raised() {
    for era in [Era::Pre66, Era::Modern] {
        // A filtered subscription on a kernel whose release is unknown: the 8-byte form first, then maybe the
        // legacy one; closing undoes what the kernel counted either way.
        let cfg = SubscriberConfig { events: EventMask::EXIT, kernel: None, ..config(2) };
        let mut h = Harness::start(FakeKernel::new(era, 2), cfg, 100);
        h.advance(PROBE_WAIT);
        assert!(matches!(h.state(), State::Subscribed { .. }), "{era:?}: {:?}", h.state());
        assert_eq!(h.kernel.listeners, 1, "{era:?}");
        h.close();
        assert_eq!(h.kernel.listeners, 0, "{era:?}");
    }
}

#[test]
fn no_ack_ends_after_the_ack_timeout() {
    let mut kernel = FakeKernel::new(Era::Modern, 2);
    kernel.ignore_requests = true; // a foreign user or pid namespace
    let mut h = Harness::start(kernel, config(2), 100);
    h.advance(ACK_TIMEOUT - Duration::from_millis(1));
    assert_eq!(h.state(), State::Subscribing);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.state(), State::Failed(Failure::NoAck { waited: ACK_TIMEOUT }));
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn a_filtered_subscription_in_a_foreign_namespace_does_not_wait_twice() {
    let mut kernel = FakeKernel::new(Era::Modern, 2);
    kernel.ignore_requests = true;
    let mut h = Harness::start(kernel, SubscriberConfig { events: EventMask::EXIT, ..config(2) }, 100);
    h.advance(ACK_TIMEOUT * 3);
    assert_eq!(h.state(), State::Failed(Failure::NoAck { waited: PROBE_WAIT + ACK_TIMEOUT }));
    assert!(PROBE_WAIT + ACK_TIMEOUT < ACK_TIMEOUT * 2);
}

#[test]
fn a_lost_ack_is_asked_again_on_6_6() {
    let mut kernel = FakeKernel::new(Era::Modern, 2);
    kernel.lose_acks(0, 1); // the main socket (opened first) loses its first ack to an overflow
    let mut h = Harness::start(kernel, config(2), 100);
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(h.engine.counters().overruns, 1);
    assert_eq!(h.kernel.listeners, 1);
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn a_lost_ack_before_6_6_is_not_asked_again_and_close_still_undoes_it() {
    let mut kernel = FakeKernel::new(Era::Pre66, 2);
    kernel.lose_acks(0, 1);
    let mut h = Harness::start(kernel, SubscriberConfig { kernel: old_release(), ..config(2) }, 100);
    assert_eq!(h.kernel.listeners, 1, "the kernel counted the LISTEN whose ack was lost");
    h.advance(ACK_TIMEOUT);
    assert_eq!(h.state(), State::Failed(Failure::NoAck { waited: ACK_TIMEOUT }));
    assert_eq!(h.kernel.listens(), 1, "a second LISTEN would count twice");
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn the_6_6_filter_is_acked_on_the_probe() {
    let mut h =
        Harness::start(FakeKernel::new(Era::Modern, 2), SubscriberConfig { events: EventMask::EXIT, ..config(2) }, 100);
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: true });
    assert_eq!(h.kernel.requests[0].2, ProcInput::Filtered { op: McastOp::Listen, events: EventMask::EXIT });
    assert!(h.probe.is_none(), "the probe is closed once the ack is in");
    assert!(!h.items.iter().any(|i| matches!(i, ProcItem::Ack { .. })), "a filtered socket never sees acks");
    assert_eq!(h.engine.counters().resyncs, 0, "no resync with a kernel filter");
    h.kernel.forks(0, 3);
    h.kernel.exits(1, 2, 0);
    h.pump();
    assert_eq!(h.events().len(), 2);
    assert!(h.events().iter().all(|e| matches!(e, EventData::Exit { .. })));
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn a_filtered_subscription_that_fails_late_leaves_no_listener() {
    let mut kernel = FakeKernel::new(Era::Modern, 2);
    kernel.lose_acks(1, u32::MAX); // the probe (opened second) never gets an ack
    let mut h = Harness::start(kernel, SubscriberConfig { events: EventMask::EXIT, ..config(2) }, 100);
    assert_eq!(h.kernel.listeners, 1, "the filtered LISTEN was counted");
    assert_eq!(h.state(), State::Subscribing);
    // The driver gives up here (an IO error on the probe, say).
    h.close();
    assert_eq!(h.kernel.listeners, 0);
}

#[test]
fn without_the_filter_the_probe_gives_way_to_the_legacy_form() {
    let cfg = SubscriberConfig { events: EventMask::EXIT, kernel: None, ..config(2) };
    let mut h = Harness::start(FakeKernel::new(Era::Pre66, 2), cfg, 100);
    assert_eq!(h.state(), State::Subscribing);
    h.advance(PROBE_WAIT - Duration::from_millis(1));
    assert_eq!(h.state(), State::Subscribing);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(h.elapsed(), PROBE_WAIT, "one capped probe wait, not an ack timeout");
    // The same filter now runs here.
    h.kernel.forks(0, 3);
    h.kernel.exits(1, 2, 0);
    h.pump();
    assert_eq!(h.events().len(), 2);
    assert!(h.events().iter().all(|e| matches!(e, EventData::Exit { .. })));
    assert_eq!(h.engine.counters().filtered, 3);
}

#[test]
fn a_kernel_known_older_than_6_6_is_not_probed() {
    let cfg = SubscriberConfig { events: EventMask::EXIT, kernel: old_release(), ..config(2) };
    let h = Harness::start(FakeKernel::new(Era::Pre66, 2), cfg, 100);
    assert_eq!(h.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(h.elapsed(), Duration::ZERO);
    assert_eq!(h.kernel.requests.len(), 1);
    assert_eq!(h.kernel.requests[0].2, ProcInput::Legacy(McastOp::Listen));
}

#[test]
fn the_resync_runs_only_where_it_helps() {
    let resyncs = |era, cfg: SubscriberConfig| {
        let mut h = Harness::start(FakeKernel::new(era, 4), cfg, 1000);
        assert!(matches!(h.state(), State::Subscribed { .. }));
        h.kernel.forks(2, 5);
        h.pump();
        h.advance(RESYNC_INTERVAL * 2);
        (h.engine.counters().resyncs, h.kernel.listens())
    };
    assert_eq!(resyncs(Era::Modern, config(4)), (1, 4), "6.6+ with per-CPU acks: one per other CPU");
    assert_eq!(resyncs(Era::Pre66, SubscriberConfig { kernel: old_release(), ..config(4) }), (0, 1), "before 6.6");
    assert_eq!(resyncs(Era::Pre66, SubscriberConfig { kernel: None, ..config(4) }), (0, 1), "release unknown");
    // Acks that bypass the per-CPU counter (cpu 0xffffffff) cannot give a baseline.
    assert_eq!(resyncs(Era::Old, config(4)), (0, 1), "acks without a CPU");
    let filtered = SubscriberConfig { events: EventMask::FORK, ..config(4) };
    assert_eq!(resyncs(Era::Modern, filtered), (0, 1), "kernel-filtered");
    assert_eq!(resyncs(Era::Modern, SubscriberConfig { affinity: None, ..config(4) }), (0, 1), "no affinity known");
}

#[test]
fn an_overrun_is_counted_exactly_after_the_resync() {
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 4), config(4), 4);
    let subscribed_at = h.now;
    h.items.clear();
    // CPU 2 sends 10 events while we do not read: 4 fit, 6 are dropped.
    h.kernel.forks(2, 10);
    h.pump();
    assert_eq!(h.items[0], ProcItem::Overrun);
    assert_eq!(h.events().len(), 4);
    assert!(h.losses().is_empty(), "no message after the drops yet");
    // The resync runs a second after the first one, from every CPU, and CPU 2's ack shows the gap at once.
    assert_eq!(h.engine.poll_timeout(), Some(subscribed_at + RESYNC_INTERVAL));
    h.advance(RESYNC_INTERVAL);
    assert_eq!(h.bursts.last(), Some(&4));
    assert_eq!(h.losses(), [Loss::Exact(6)]);
    assert_eq!((h.engine.counters().lost, h.engine.counters().lost_inexact), (6, 0));
}

#[test]
fn resyncs_run_at_most_once_a_second() {
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 2), config(2), 2);
    let t0 = h.now;
    assert_eq!(h.engine.counters().resyncs, 1);
    for (at, want) in [(100, 1), (999, 1), (1000, 2), (1200, 2), (1999, 2), (2000, 3)] {
        h.advance(t0 + Duration::from_millis(at) - h.now);
        if at == 100 || at == 1200 {
            h.kernel.forks(1, 5); // overflows the 2-datagram queue
            h.pump();
        }
        assert_eq!(h.engine.counters().resyncs, want, "at {at} ms");
    }
    assert_eq!(h.engine.counters().overruns, 2);
}

#[test]
fn losses_are_a_lower_bound_when_the_affinity_misses_an_online_cpu() {
    let run = |affinity: Vec<u32>| {
        let cfg = SubscriberConfig { affinity: Some(affinity.into_iter().collect()), ..config(4) };
        let mut h = Harness::start(FakeKernel::new(Era::Modern, 4), cfg, 4);
        h.items.clear();
        // CPUs 2 and 3 (outside a {0, 1} affinity) have sent nothing when CPU 1 overflows the socket.
        h.kernel.forks(1, 10);
        h.pump();
        h.advance(RESYNC_INTERVAL);
        h.losses()
    };
    assert_eq!(run(vec![0, 1, 2, 3]), [Loss::Exact(6)]);
    assert_eq!(run(vec![0, 1]), [Loss::AtLeast(6)], "CPUs 2 and 3 may have lost messages unseen");
}

#[test]
fn a_cpu_heard_from_before_the_overrun_keeps_the_count_exact() {
    let cfg = SubscriberConfig { affinity: Some([0, 1].into_iter().collect()), ..config(4) };
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 4), cfg, 4);
    h.kernel.forks(2, 1);
    h.kernel.forks(3, 1);
    h.pump();
    h.items.clear();
    h.kernel.forks(1, 10);
    h.pump();
    h.advance(RESYNC_INTERVAL);
    assert_eq!(h.losses(), [Loss::Exact(6)]);
}

#[test]
fn losses_are_a_lower_bound_without_the_online_cpus() {
    let cfg = SubscriberConfig { online: None, ..config(2) };
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 2), cfg, 4);
    h.kernel.forks(1, 10);
    h.pump();
    h.advance(RESYNC_INTERVAL);
    assert_eq!(h.losses(), [Loss::AtLeast(6)]);
}

#[test]
fn a_refusal_carries_its_errno() {
    let mut kernel = FakeKernel::new(Era::Pre66, 2);
    kernel.listeners = 1; // the kernel acks only while someone listens
    kernel.refuse = Some(1); // EPERM: no CAP_NET_ADMIN before 6.6
    let mut h = Harness::start(kernel, SubscriberConfig { kernel: old_release(), ..config(2) }, 100);
    assert_eq!(h.state(), State::Failed(Failure::Refused(1)));
    h.close();
    assert_eq!(h.kernel.listeners, 1);
}

#[test]
fn a_kernel_filtered_overrun_is_counted_from_the_drop_counter() {
    let cfg = SubscriberConfig { events: EventMask::EXIT, ..config(2) };
    let mut h = Harness::start(FakeKernel::new(Era::Modern, 2), cfg, 3);
    h.kernel.forks(0, 50); // filtered out by the kernel: nothing to drop
    h.kernel.exits(1, 10, 0);
    h.pump();
    assert_eq!(h.kernel.drops(h.main), 7);
    assert_eq!(h.losses(), [Loss::Exact(7)]);
    assert_eq!(h.events().len(), 3);

    // Where the counter cannot be read, the loss is still reported, without a count.
    h.drop_counter_readable = false;
    h.kernel.exits(1, 10, 0);
    h.pump();
    assert_eq!(h.losses(), [Loss::Exact(7), Loss::Unknown]);
    assert_eq!(h.engine.counters().lost_inexact, 1);
}
