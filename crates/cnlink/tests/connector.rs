//! The generic client: request/reply over NETLINK_USERSOCK against an echo peer, late replies, the queue bound,
//! overruns during a request, trust (ports and uids), and a live request to the kernel's proc connector.

mod common;

use std::time::Duration;

use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, NlMsg, ProcEvent, ProcInput};
use cnlink::{ClientItem, Connector, Error, MatchRule, Trust};

/// Receives one request; returns the echo reply the way `cnlink bus echo` and the kernel's cn_test answer (same
/// seq, ack + 1, same data) and where to send it.
fn take_request(peer: &Socket) -> (Vec<u8>, NlAddr) {
    let mut buf = [0u8; 256];
    let meta = peer.recv(&mut buf).unwrap();
    let nl = NlMsg::new_checked(&buf[..meta.len]).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    let hdr = CnMsgHdr { ack: cn.ack().wrapping_add(1), ..cn.header() };
    (wire::datagram(hdr, cn.data(), 0).unwrap(), meta.from)
}

/// Answers one message with its echo.
fn echo_once(peer: &Socket) {
    let (reply, to) = take_request(peer);
    peer.send_to(&reply, to).unwrap();
}

fn client_of(peer: &Socket) -> Connector {
    Connector::open_with(Protocol::Usersock, NlAddr::port(peer.port()), MatchRule::Documented, Trust::PeerOnly).unwrap()
}

fn next_message(c: &mut Connector) -> cnlink::OwnedMsg {
    loop {
        match c.recv(Some(Duration::from_secs(5))).unwrap().expect("a message within 5 s") {
            ClientItem::Message(m) => return m,
            _ => continue,
        }
    }
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
fn a_late_reply_arrives_as_a_new_message() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    let (answer, answered) = std::sync::mpsc::channel::<()>();
    let late = std::thread::spawn(move || {
        let (reply, to) = take_request(&peer);
        // Answer only once the client has given up.
        answered.recv().unwrap();
        peer.send_to(&reply, to).unwrap();
        peer
    });
    let err = c.request(CbId::new(14, 0x456), b"slow", Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    answer.send(()).unwrap();
    let m = next_message(&mut c);
    assert_eq!(m.data, b"slow");
    assert_eq!((c.counters().late, c.counters().expired), (1, 1));
    assert_eq!(c.core().poll_timeout(), None, "nothing is waiting any more");
    drop(late.join().unwrap());
}

#[test]
fn the_queue_is_bounded_and_counts_what_it_drops() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    c.core_mut().set_queue_limit(2);
    let to = NlAddr::port(c.socket().port());
    let sender = std::thread::spawn(move || {
        let (reply, from) = take_request(&peer);
        // Five messages the client did not ask for, then the reply: the reply is never the one dropped.
        for seq in 0..5 {
            let d = wire::datagram(CnMsgHdr { id: CbId::new(2, 2), seq, ..Default::default() }, b"n", 0).unwrap();
            peer.send_to(&d, to).unwrap();
        }
        peer.send_to(&reply, from).unwrap();
        peer
    });
    let r = c.request(CbId::new(14, 0x456), b"q", Duration::from_secs(5)).unwrap();
    assert_eq!(r.data, b"q");
    let seqs: Vec<u32> = std::iter::from_fn(|| c.recv(Some(Duration::ZERO)).unwrap())
        .filter_map(ClientItem::into_message)
        .map(|m| m.hdr.seq)
        .collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!((c.counters().dropped, c.counters().received), (3, 6));
    drop(sender.join().unwrap());
}

#[test]
fn an_overrun_during_a_request_is_counted_and_the_request_goes_on() {
    if !rustix::process::geteuid().is_root() {
        // Joining a NETLINK_USERSOCK group, which is how a flood can overrun the client, needs root.
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "needs root, and CI runs as root");
        eprintln!("skipped: needs root");
        return;
    }
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    c.socket().set_recv_buffer(0).unwrap(); // the kernel's minimum: a few datagrams
    let group = 29;
    c.join(group).unwrap();
    // Multicast to a full receiver is dropped and sets ENOBUFS on it (spec §10.3). With nobody reading, a few
    // hundred datagrams overrun it for sure; the next receive, inside the request below, reports it.
    let d = wire::datagram(CnMsgHdr { id: CbId::new(29, 1), ..Default::default() }, &[0; 512], 0).unwrap();
    let to_group = NlAddr { port: 0, groups: 1 << (group - 1) };
    let flood = move |peer: &Socket| {
        for _ in 0..500 {
            peer.send_to(&d, to_group).ok(); // ECONNREFUSED after delivery: nobody holds port 0 (spec §10.8)
        }
    };
    flood(&peer);
    let echo = std::thread::spawn(move || {
        let (reply, from) = take_request(&peer);
        flood(&peer); // and more while the request waits
        peer.send_to(&reply, from).unwrap();
        peer
    });
    let r = c.request(CbId::new(14, 0x456), b"through the storm", Duration::from_secs(10)).unwrap();
    assert_eq!(r.data, b"through the storm");
    assert!(c.counters().overruns >= 1, "{:?}", c.counters());
    let items: Vec<ClientItem> = std::iter::from_fn(|| c.recv(Some(Duration::ZERO)).unwrap()).collect();
    assert!(items.contains(&ClientItem::Overrun), "the overrun is an item for recv");
    drop(echo.join().unwrap());
}

#[test]
fn a_peer_port_held_by_an_untrusted_uid_fails_the_request_and_names_it() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let me = rustix::process::getuid().as_raw();
    let others = Trust::PeerWithUids(vec![me.wrapping_add(4242)]);
    let mut c =
        Connector::open_with(Protocol::Usersock, NlAddr::port(peer.port()), MatchRule::Documented, others).unwrap();
    let echo = std::thread::spawn(move || {
        echo_once(&peer);
        peer
    });
    let err = c.request(CbId::new(14, 0x456), b"who are you", Duration::from_secs(5)).unwrap_err();
    let pid = std::process::id() as i32;
    assert!(
        matches!(err, Error::UntrustedPeer { port, uid: Some(u), pid: Some(p) } if port == c.core().peer().port && u == me && p == pid),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("uid {me} (pid {pid})")), "{err}");
    assert_eq!(c.counters().rejected, 1);
    assert!(c.recv(Some(Duration::ZERO)).unwrap().is_none(), "nothing of theirs is kept");
    // Trusting that uid, the same peer is answered.
    c.core_mut().set_trust(Trust::PeerWithUids(vec![me]));
    let peer = echo.join().unwrap();
    let echo = std::thread::spawn(move || echo_once(&peer));
    assert_eq!(c.request(CbId::new(14, 0x456), b"again", Duration::from_secs(5)).unwrap().data, b"again");
    echo.join().unwrap();
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
    assert_eq!(c.counters().rejected, 1);
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

#[test]
fn the_tap_sees_every_datagram_before_the_core_even_one_that_does_not_decode() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let s = seen.clone();
    c.set_tap(Box::new(move |ev| {
        if let cnlink::proc::TapEvent::Received { datagram, .. } = ev {
            s.lock().unwrap().push(datagram.to_vec());
        }
    }));
    let me = NlAddr::port(c.socket().port());
    // A netlink header whose payload is too short for a cn_msg, then a good message.
    let mut broken = Vec::new();
    broken.extend_from_slice(&20u32.to_ne_bytes());
    broken.extend_from_slice(&3u16.to_ne_bytes());
    broken.extend_from_slice(&[0; 10]);
    broken.extend_from_slice(b"oops");
    peer.send_to(&broken, me).unwrap();
    let good = wire::datagram(CnMsgHdr { id: CbId::new(14, 1), ..Default::default() }, b"fine", 0).unwrap();
    peer.send_to(&good, me).unwrap();
    assert_eq!(next_message(&mut c).data, b"fine");
    assert_eq!(c.counters().malformed, 1);
    assert_eq!(*seen.lock().unwrap(), [broken, good.to_vec()]);
    assert!(c.take_tap().is_some() && c.take_tap().is_none());
}
