//! The tap: a recorder sees every datagram a subscription receives, as received, every overrun and every request
//! it sends.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cnlink::proc::{Path, ProcEvents, ProcItem, ProcOptions, Tap, TapEvent};
use cnlink::wire::{CbId, CnMsgs, EventData, McastOp, NlMessages, ProcEvent, ProcInput};

#[derive(Debug, Default)]
struct Recording {
    received: Vec<(Path, u32, Vec<u8>)>,
    overruns: Vec<Path>,
    sent: Vec<(Path, Option<u32>, Vec<u8>)>,
}

fn recorder() -> (Arc<Mutex<Recording>>, Tap) {
    let rec = Arc::new(Mutex::new(Recording::default()));
    let r = rec.clone();
    let tap: Tap = Box::new(move |ev: TapEvent<'_>| {
        let mut r = r.lock().unwrap();
        match ev {
            TapEvent::Received { path, meta, datagram } => r.received.push((path, meta.from.port, datagram.to_vec())),
            TapEvent::Overrun { path } => r.overruns.push(path),
            TapEvent::Sent { path, cpu, datagram } => r.sent.push((path, cpu, datagram.to_vec())),
            _ => {}
        }
    });
    (rec, tap)
}

/// Every proc message in a datagram: `(cpu, seq, cn_msg.ack, what)`.
fn messages(d: &[u8]) -> Vec<(u32, u32, u32, EventData)> {
    let mut out = Vec::new();
    for nl in NlMessages::new(d).flatten() {
        for cn in CnMsgs::new(nl.payload()).flatten() {
            if cn.id() == CbId::PROC {
                if let Ok(ev) = ProcEvent::parse(cn.data()) {
                    out.push((ev.cpu, cn.seq(), cn.ack(), ev.data));
                }
            }
        }
    }
    out
}

/// The request in a datagram we sent, and its `ack`.
fn request(d: &[u8]) -> (ProcInput, u32) {
    let nl = NlMessages::new(d).next().unwrap().unwrap();
    let cn = CnMsgs::new(nl.payload()).next().unwrap().unwrap();
    (ProcInput::parse(cn.data()).unwrap(), cn.ack())
}

#[test]
fn the_tap_sees_the_handshake_every_datagram_and_the_overruns() {
    if !common::live_kernel() {
        return;
    }
    let (rec, tap) = recorder();
    // The default buffer while subscribing (so that the machine's other events cannot push the ack out), then
    // the smallest the kernel allows, for the overruns.
    let mut events = ProcEvents::subscribe_with_tap(ProcOptions::default(), tap).unwrap();
    events.socket().set_recv_buffer(1).unwrap();
    {
        let r = rec.lock().unwrap();
        // The LISTEN went out, and its ack (ack + 1) was among what came in, from the kernel.
        let (first, ack) = request(&r.sent[0].2);
        assert_eq!(first, ProcInput::Legacy(McastOp::Listen));
        assert!(r
            .received
            .iter()
            .any(|(path, port, d)| *path == Path::Main && *port == 0 && messages(d).iter().any(|m| m.2 == ack + 1)));
    }

    // A burst the stream does not read, so that it overruns.
    (0..400).for_each(|_| std::thread::spawn(|| ()).join().unwrap());
    let mut items = Vec::new();
    while events.recv_items(&mut items, Some(Duration::from_millis(300))).unwrap() > 0 {}
    let counters = events.stats();
    assert!(counters.overruns > 0, "{counters:?}");

    let r = rec.lock().unwrap();
    let main: Vec<_> = r.received.iter().filter(|(p, _, _)| *p == Path::Main).collect();
    assert_eq!(main.len() as u64, counters.datagrams, "every datagram the engine handled was tapped first");
    assert_eq!(r.overruns.iter().filter(|p| **p == Path::Main).count() as u64, counters.overruns);
    // Every event and ack the stream yielded is in a tapped datagram, byte for byte as decoded.
    let tapped: HashSet<(u32, u32)> = main.iter().flat_map(|(_, _, d)| messages(d)).map(|m| (m.0, m.1)).collect();
    for item in &items {
        match *item {
            ProcItem::Event(e) => assert!(tapped.contains(&(e.cpu, e.seq)), "{e:?}"),
            ProcItem::Ack { cpu, seq, .. } => assert!(tapped.contains(&(cpu, seq))),
            _ => {}
        }
    }
    // The resync requests went out from their CPUs.
    assert_eq!(r.sent.len() as u64, counters.requests);
    assert!(r
        .sent
        .iter()
        .skip(1)
        .all(|(_, cpu, d)| cpu.is_some() && request(d).0 == ProcInput::Legacy(McastOp::Listen)));
    drop(r);

    // Taken out, the tap sees nothing more; the IGNORE at drop goes out untapped.
    let before = rec.lock().unwrap().sent.len();
    assert!(events.take_tap().is_some());
    drop(events);
    assert_eq!(rec.lock().unwrap().sent.len(), before);
}

#[test]
fn a_tap_set_later_sees_the_ignore_at_drop() {
    if !common::live_kernel() {
        return;
    }
    let mut events = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let (rec, tap) = recorder();
    events.set_tap(tap);
    drop(events);
    let r = rec.lock().unwrap();
    let (req, _) = request(&r.sent.last().unwrap().2);
    assert_eq!(req, ProcInput::Legacy(McastOp::Ignore));
}
