//! The generic client: request/reply over NETLINK_USERSOCK against an echo peer, trust, and a live request to
//! the kernel's proc connector.

mod common;

use std::time::Duration;

use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, NlMsg, ProcEvent, ProcInput};
use cnlink::{Connector, Error, MatchRule, Trust};

/// Answers one message the way `cnlink bus echo` and the kernel's cn_test do: same seq, ack + 1, same data.
fn echo_once(peer: &Socket) {
    let mut buf = [0u8; 256];
    let meta = peer.recv(&mut buf).unwrap();
    let nl = NlMsg::new_checked(&buf[..meta.len]).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    let hdr = CnMsgHdr { ack: cn.ack().wrapping_add(1), ..cn.header() };
    let reply = wire::datagram(hdr, cn.data(), 0).unwrap();
    peer.send_to(&reply, meta.from).unwrap();
}

#[test]
fn request_reply_over_usersock() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let to = NlAddr::port(peer.port());
    let mut c = Connector::open_with(Protocol::Usersock, to, MatchRule::Documented, Trust::PeerOnly).unwrap();
    let echo = std::thread::spawn(move || {
        echo_once(&peer);
        echo_once(&peer);
        peer
    });
    let a = c.request(CbId::new(14, 0x456), b"first", Duration::from_secs(5)).unwrap();
    let b = c.request(CbId::new(14, 0x456), b"second", Duration::from_secs(5)).unwrap();
    assert_eq!(a.data, b"first");
    assert_eq!(b.data, b"second");
    assert_eq!(b.hdr.seq, a.hdr.seq + 1, "seq increases by one per message");
    assert_eq!(a.from, to);
    assert_eq!(a.creds.unwrap().pid, std::process::id() as i32);
    let peer = echo.join().unwrap();
    // Nobody answers now: a typed timeout.
    let err = c.request(CbId::new(14, 0x456), b"third", Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    drop(peer);
}

#[test]
fn spoofed_proc_event_from_another_socket_is_rejected() {
    // A process that may write to our port forges a proc fork event; only the kernel (port 0) is trusted.
    let forger = Socket::open(Protocol::Usersock).unwrap();
    let mut c =
        Connector::open_with(Protocol::Usersock, NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly).unwrap();
    let mut ev = [0u8; 40];
    let fork = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 666, child_tgid: 666 };
    ProcEvent { cpu: 0, timestamp_ns: 1, data: fork }.emit(&mut ev).unwrap();
    let d = wire::datagram(CnMsgHdr { id: CbId::PROC, seq: 1, ..Default::default() }, &ev, 0).unwrap();
    forger.send_to(&d, NlAddr::port(c.socket().port())).unwrap();
    assert!(c.recv(Some(Duration::from_millis(200))).unwrap().is_none());
    assert_eq!(c.stats().rejected, 1);
}

#[test]
fn spoofed_multicast_on_the_proc_group_is_rejected() {
    if !common::live_kernel() {
        return;
    }
    // Root can multicast to connector group 1 from userspace: the proc stream must drop it and count it.
    let mut events = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let forger = Socket::open(Protocol::Connector).unwrap();
    let mut ev = [0u8; 40];
    let fork = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 999_999, child_tgid: 999_999 };
    ProcEvent { cpu: 0, timestamp_ns: 1, data: fork }.emit(&mut ev).unwrap();
    let d = wire::datagram(CnMsgHdr { id: CbId::PROC, seq: 1, ..Default::default() }, &ev, 0).unwrap();
    // Netlink delivers the multicast, then also hands it to the kernel, which ignores a 40-byte proc request.
    forger.send_to(&d, NlAddr { port: 0, groups: 1 }).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut items = Vec::new();
    while events.stats().rejected == 0 && std::time::Instant::now() < deadline {
        events.recv_items(&mut items, Some(Duration::from_millis(100))).unwrap();
    }
    assert_eq!(events.stats().rejected, 1);
    assert!(!items.iter().any(|i| matches!(i, ProcItem::Event(e) if e.data.subject() == Some((999_999, 999_999)))));
}

#[test]
fn request_to_the_kernel_proc_connector_gets_its_ack() {
    if !common::live_kernel() {
        return;
    }
    // The proc connector answers `ack + 1` with its own seq: the AckPlusOne rule.
    let mut c =
        Connector::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::AckPlusOne, Trust::PeerOnly).unwrap();
    c.join(1).unwrap();
    let (listen, n) = ProcInput::Legacy(cnlink::wire::McastOp::Listen).to_bytes();
    let reply = c.request(CbId::PROC, &listen[..n], Duration::from_secs(5)).unwrap();
    assert_eq!(reply.from.port, 0);
    assert!(matches!(ProcEvent::parse(&reply.data).unwrap().data, EventData::Ack { err: 0 }));
    let (ignore, n) = ProcInput::Legacy(cnlink::wire::McastOp::Ignore).to_bytes();
    c.send(CbId::PROC, &ignore[..n]).unwrap();
}
