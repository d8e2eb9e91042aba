//! `Connector` waits with a blocking receive under `SO_RCVTIMEO` and finishes with `poll`: deadlines still hold,
//! with other traffic arriving meanwhile, with waits too short for the socket option, on a socket made
//! non-blocking, and with no deadline at all.

use std::time::{Duration, Instant};

use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink::{ClientItem, Connector, Error, MatchRule, Trust};

/// How late a deadline may be met on a shared, loaded machine (the kernel's jiffy rounding is covered by the
/// connector; this is scheduling): 150 ms, four times that under `CI=true`, where other jobs share the machine.
fn late() -> Duration {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    Duration::from_millis(if ci { 600 } else { 150 })
}

fn pair() -> (Socket, Connector) {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let c = Connector::open_with(Protocol::Usersock, NlAddr::port(peer.port()), MatchRule::Documented, Trust::PeerOnly)
        .unwrap();
    (peer, c)
}

fn assert_within(t0: Instant, wait: Duration) {
    let took = t0.elapsed();
    assert!(took >= wait, "returned early: {took:?} < {wait:?}");
    assert!(took < wait + late(), "returned late: {took:?} for {wait:?}");
}

#[test]
fn port_is_the_bound_address() {
    let (peer, c) = pair();
    assert_ne!(c.socket().port(), 0);
    assert_eq!(c.socket().port(), c.socket().port());
    let d = wire::datagram(CnMsgHdr { id: CbId::new(1, 1), ..Default::default() }, b"x", 0).unwrap();
    c.socket().send_to(&d, NlAddr::port(peer.port())).unwrap();
    let mut buf = [0u8; 128];
    assert_eq!(peer.recv(&mut buf).unwrap().from, NlAddr::port(c.socket().port()));
}

#[test]
fn request_deadlines_hold_for_long_short_and_repeated_timeouts() {
    let (_peer, mut c) = pair();
    for ms in [300, 5, 40, 300] {
        let wait = Duration::from_millis(ms);
        let t0 = Instant::now();
        let err = c.request(CbId::new(14, 0x456), b"nobody answers", wait).unwrap_err();
        assert!(matches!(err, Error::Timeout(t) if t == wait), "{err}");
        assert_within(t0, wait);
    }
    let t0 = Instant::now();
    assert!(c.recv(Some(Duration::from_millis(250))).unwrap().is_none());
    assert_within(t0, Duration::from_millis(250));
}

#[test]
fn deadline_holds_while_other_messages_keep_arriving() {
    let (peer, mut c) = pair();
    let to = NlAddr::port(c.socket().port());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Unrelated messages every 10 ms: each wakes the blocking receive, which must not restart the full wait.
    let noise = std::thread::spawn(move || {
        let d = wire::datagram(CnMsgHdr { id: CbId::new(2, 2), seq: 7, ..Default::default() }, b"noise", 0).unwrap();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            peer.send_to(&d, to).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let wait = Duration::from_millis(400);
    let t0 = Instant::now();
    let err = c.request(CbId::new(14, 0x456), b"nobody answers", wait).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_within(t0, wait);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    noise.join().unwrap();
    assert_eq!(
        c.recv(Some(Duration::from_secs(1))).unwrap().and_then(ClientItem::into_message).unwrap().data,
        b"noise",
        "kept for recv"
    );
}

#[test]
fn a_socket_made_non_blocking_still_waits() {
    let (peer, mut c) = pair();
    c.socket().set_nonblocking(true).unwrap();
    let wait = Duration::from_millis(200);
    let t0 = Instant::now();
    assert!(c.recv(Some(wait)).unwrap().is_none());
    assert_within(t0, wait);
    let to = NlAddr::port(c.socket().port());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let d = wire::datagram(CnMsgHdr { id: CbId::new(2, 2), ..Default::default() }, b"late", 0).unwrap();
        peer.send_to(&d, to).unwrap();
        peer
    });
    assert_eq!(c.recv(Some(Duration::from_secs(5))).unwrap().and_then(ClientItem::into_message).unwrap().data, b"late");
    drop(sender.join().unwrap());
}

#[test]
fn no_deadline_waits_until_a_message_arrives() {
    let (peer, mut c) = pair();
    // First a wait with a timeout (SO_RCVTIMEO set), then one without: the option must be cleared again.
    assert!(c.recv(Some(Duration::from_millis(30))).unwrap().is_none());
    let to = NlAddr::port(c.socket().port());
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let d = wire::datagram(CnMsgHdr { id: CbId::new(2, 2), ..Default::default() }, b"later", 0).unwrap();
        peer.send_to(&d, to).unwrap();
        peer
    });
    let t0 = Instant::now();
    assert_eq!(c.recv(None).unwrap().and_then(ClientItem::into_message).unwrap().data, b"later");
    assert!(t0.elapsed() >= Duration::from_millis(90));
    drop(sender.join().unwrap());
}
