//! The engine driven by hand-made acks (the scripted fake kernel is in `tests/subscriber.rs`).

use super::*;
use crate::wire::{CnMsg, EventData, NlMsg, ProcEvent};

fn t0() -> Instant {
    Instant::now()
}

/// The `ack` field of a request, and what it asks.
fn read(t: &Transmit) -> (u32, ProcInput) {
    let nl = NlMsg::new_checked(t.datagram()).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    assert_eq!(cn.id(), CbId::PROC);
    (cn.ack(), ProcInput::parse(cn.data()).unwrap())
}

/// The kernel's answer to a request with `ack`, sent from `cpu` as its message number `seq`.
fn ack_of(ack: u32, cpu: u32, seq: u32, err: u32) -> Vec<u8> {
    let mut ev = [0u8; 40];
    ProcEvent { cpu, timestamp_ns: 1, data: EventData::Ack { err } }.emit(&mut ev).unwrap();
    wire::datagram(CnMsgHdr { id: CbId::PROC, seq, ack: ack.wrapping_add(1), ..Default::default() }, &ev, 0).unwrap()
}

fn config(events: EventMask) -> SubscriberConfig {
    SubscriberConfig {
        events,
        initial_ack: 0xfffffffe,
        kernel: Some(KernelRelease { major: 6, minor: 18 }),
        affinity: Some([0, 1, 2].into_iter().collect()),
        online: Some([0, 1, 2].into_iter().collect()),
        ..Default::default()
    }
}

#[test]
fn an_empty_event_mask_is_refused() {
    let c = SubscriberConfig { events: EventMask::NONE, ..config(EventMask::ALL) };
    assert_eq!(Subscriber::new(t0(), c).unwrap_err(), ConfigError::NoEvents);
    let unknown_bits_only = SubscriberConfig { events: EventMask(0x8), ..config(EventMask::ALL) };
    assert_eq!(Subscriber::new(t0(), unknown_bits_only).unwrap_err(), ConfigError::NoEvents);
}

#[test]
fn legacy_listen_ack_then_resync_of_the_other_cpus() {
    let now = t0();
    let mut s = Subscriber::new(now, config(EventMask::ALL)).unwrap();
    assert!(!s.probe_wanted());
    let listen = s.poll_transmit().unwrap();
    assert_eq!((listen.path, listen.cpu), (Path::Main, None));
    let (ack, req) = read(&listen);
    assert_eq!(req, ProcInput::Legacy(McastOp::Listen));
    assert_eq!(ack, 0xfffffffe);
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(1)));

    // Another process's ack does not subscribe us; ours (the ack field wraps) does.
    s.handle(now, Path::Main, NlAddr::KERNEL, &ack_of(7, 1, 10, 0));
    assert_eq!(s.state(), State::Subscribing);
    s.handle(now, Path::Main, NlAddr::KERNEL, &ack_of(ack, 1, 11, 0));
    assert_eq!(s.state(), State::Subscribed { kernel_filtered: false });
    assert_eq!(s.poll_event(), Some(SubscriberEvent::Subscribed { kernel_filtered: false }));

    // CPU 1 answered; 0 and 2 are asked at once, one after the other, from their own CPUs.
    let resync: Vec<_> = std::iter::from_fn(|| s.poll_transmit()).collect();
    assert_eq!(resync.iter().map(|t| t.cpu).collect::<Vec<_>>(), [Some(0), Some(2)]);
    assert!(resync.iter().all(|t| read(t).1 == ProcInput::Legacy(McastOp::Listen)));
    assert_eq!(s.counters().resyncs, 1);
    assert_eq!(s.poll_timeout(), None);

    // Both acks come back as items; items before them too.
    for (i, t) in resync.iter().enumerate() {
        s.handle(now, Path::Main, NlAddr::KERNEL, &ack_of(read(t).0, t.cpu.unwrap(), 50, 0));
        assert_eq!(s.counters().own_acks, 2 + i as u64);
    }
    let mut items = Vec::new();
    assert_eq!(s.drain_items(&mut items), 4);
    assert!(matches!(items[1], ProcItem::Ack { seq: 11, cpu: 1, err: 0, .. }));
    assert!(!s.has_items());

    s.close();
    let ignore = s.poll_transmit().unwrap();
    assert_eq!(read(&ignore).1, ProcInput::Legacy(McastOp::Ignore));
    assert!(s.poll_transmit().is_none(), "6.6+: one IGNORE undoes every LISTEN of the socket");
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn refused_and_no_ack() {
    let now = t0();
    let mut s = Subscriber::new(now, config(EventMask::ALL)).unwrap();
    let (ack, _) = read(&s.poll_transmit().unwrap());
    s.handle(now, Path::Main, NlAddr::KERNEL, &ack_of(ack, 0, 1, 1));
    assert_eq!(s.state(), State::Failed(Failure::Refused(1)));

    let mut s = Subscriber::new(now, config(EventMask::ALL)).unwrap();
    s.poll_transmit().unwrap();
    s.handle_timeout(now + Duration::from_millis(999));
    assert_eq!(s.state(), State::Subscribing);
    s.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(s.state(), State::Failed(Failure::NoAck { waited: Duration::from_secs(1) }));
    assert_eq!(s.poll_event(), Some(SubscriberEvent::Failed(Failure::NoAck { waited: Duration::from_secs(1) })));
    s.close();
    assert_eq!(read(&s.poll_transmit().unwrap()).1, ProcInput::Legacy(McastOp::Ignore), "the LISTEN went out");
}

#[test]
fn a_filtered_subscription_reports_its_socket_drops() {
    let now = t0();
    let mut s = Subscriber::new(now, config(EventMask::EXIT)).unwrap();
    assert!(s.probe_wanted());
    let (ack, req) = read(&s.poll_transmit().unwrap());
    assert_eq!(req, ProcInput::Filtered { op: McastOp::Listen, events: EventMask::EXIT });
    s.handle(now, Path::Probe, NlAddr::KERNEL, &ack_of(ack, 0, 1, 0));
    assert_eq!(s.state(), State::Subscribed { kernel_filtered: true });
    assert!(!s.probe_wanted());
    assert!(s.poll_transmit().is_none(), "no resync with a kernel filter");

    s.handle_overrun(now, Path::Main);
    assert!(s.drop_count_wanted());
    s.handle_drop_count(now, Some(12));
    assert!(!s.drop_count_wanted());
    s.handle_overrun(now, Path::Main);
    s.handle_drop_count(now, None);
    s.handle_drop_count(now, Some(20));
    let items: Vec<_> = std::iter::from_fn(|| s.poll_item()).collect();
    assert_eq!(
        items,
        [
            ProcItem::Overrun,
            ProcItem::Lost(Loss::Exact(12)),
            ProcItem::Overrun,
            ProcItem::Lost(Loss::Unknown),
            ProcItem::Lost(Loss::Exact(8))
        ]
    );
    let c = s.counters();
    assert_eq!((c.lost, c.lost_inexact, c.overruns), (20, 1, 2));
}
