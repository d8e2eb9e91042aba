//! The async drivers: a proc stream on the live kernel, and request/reply over NETLINK_USERSOCK: replies,
//! timeouts, a cancelled request whose reply comes late, overruns during a request, groups.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use cnlink::proc::{ProcItem, ProcOptions};
use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::tokio::{AsyncConnector, ProcStream};
use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, NlMsg};
use cnlink::{ClientItem, MatchRule, Trust};

#[tokio::test]
async fn proc_stream_sees_a_child_exit() {
    if !common::live_kernel() {
        return;
    }
    let mut events = ProcStream::subscribe(ProcOptions::default()).await.unwrap();
    let mut child = std::process::Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        let mut items = Vec::new();
        loop {
            items.clear();
            events.recv_items(&mut items).await.unwrap();
            for item in &items {
                if let ProcItem::Event(e) = item {
                    if let EventData::Exit { process_pid, exit_code, .. } = e.data {
                        if process_pid == pid {
                            return exit_code;
                        }
                    }
                }
            }
        }
    })
    .await
    .expect("exit event within 10 s");
    assert_eq!(found, 7 << 8);
}

/// Receives one request; returns its echo reply (same seq, ack + 1, same data) and where to send it.
fn take_request(peer: &Socket) -> (Vec<u8>, NlAddr) {
    let mut buf = [0u8; 256];
    let meta = peer.recv(&mut buf).unwrap();
    let nl = NlMsg::new_checked(&buf[..meta.len]).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    let reply = wire::datagram(CnMsgHdr { ack: cn.ack().wrapping_add(1), ..cn.header() }, cn.data(), 0).unwrap();
    (reply, meta.from)
}

fn client_of(peer: &Socket) -> AsyncConnector {
    let to = NlAddr::port(peer.port());
    AsyncConnector::open_with(Protocol::Usersock, to, MatchRule::Documented, Trust::PeerOnly).unwrap()
}

#[tokio::test]
async fn async_request_reply_over_usersock() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    let echo = std::thread::spawn(move || {
        let (reply, to) = take_request(&peer);
        peer.send_to(&reply, to).unwrap();
        peer
    });
    let reply = c.request(CbId::new(14, 0x456), b"async", Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.data, b"async");
    let peer = echo.join().unwrap();
    let err = c.request(CbId::new(14, 0x456), b"none", Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, cnlink::Error::Timeout(_)), "{err}");
    drop(peer);
    let err = c.request(CbId::new(14, 0x456), b"gone", Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(&err, cnlink::Error::Io(e) if e.raw_os_error() == Some(libc::ECONNREFUSED)), "{err}");
}

#[tokio::test]
async fn a_cancelled_request_forgets_itself_and_its_late_reply_is_a_message() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    let (answer, answered) = std::sync::mpsc::channel::<()>();
    let (got, got_rx) = std::sync::mpsc::channel::<()>();
    let late = std::thread::spawn(move || {
        let (reply, to) = take_request(&peer);
        got.send(()).unwrap();
        answered.recv().unwrap();
        peer.send_to(&reply, to).unwrap();
        peer
    });
    {
        // The request future is dropped once the peer has the request, before any reply: cancellation.
        let request = c.request(CbId::new(14, 0x456), b"cancelled", Duration::from_secs(30));
        let peer_has_it = tokio::task::spawn_blocking(move || got_rx.recv().unwrap());
        tokio::select! {
            r = request => panic!("no reply was sent, yet the request ended: {r:?}"),
            _ = peer_has_it => {}
        }
    }
    assert_eq!(c.core().poll_timeout(), None, "the dropped request left nothing waiting");
    answer.send(()).unwrap();
    let item = tokio::time::timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap();
    assert_eq!(item.message().map(|m| &m.data[..]), Some(&b"cancelled"[..]));
    assert_eq!(c.counters().late, 1);
    drop(late.join().unwrap());
}

#[tokio::test]
async fn an_overrun_during_an_async_request_is_counted_and_groups_join_and_leave() {
    if !rustix::process::geteuid().is_root() {
        // Joining a NETLINK_USERSOCK group, which is how a flood can overrun the client, needs root.
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "needs root, and CI runs as root");
        eprintln!("skipped: needs root");
        return;
    }
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let mut c = client_of(&peer);
    c.socket().set_recv_buffer(0).unwrap();
    let group = 30;
    c.join(group).unwrap();
    assert_eq!(c.socket().memberships().unwrap(), [group]);
    // With nobody reading, a few hundred multicast datagrams overrun the client for sure (spec §10.3); the
    // next receive, inside the request below, reports it.
    let d = wire::datagram(CnMsgHdr { id: CbId::new(30, 1), ..Default::default() }, &[0; 512], 0).unwrap();
    let to_group = NlAddr { port: 0, groups: 1 << (group - 1) };
    let flood = move |peer: &Socket| {
        for _ in 0..500 {
            peer.send_to(&d, to_group).ok(); // ECONNREFUSED after delivery: nobody holds port 0 (spec §10.8)
        }
    };
    flood(&peer);
    let echo = std::thread::spawn(move || {
        let (reply, to) = take_request(&peer);
        flood(&peer); // and more while the request waits
        peer.send_to(&reply, to).unwrap();
        peer
    });
    let r = c.request(CbId::new(14, 0x456), b"through the storm", Duration::from_secs(10)).await.unwrap();
    assert_eq!(r.data, b"through the storm");
    assert!(c.counters().overruns >= 1, "{:?}", c.counters());
    let mut saw_overrun = false;
    while let Ok(item) = tokio::time::timeout(Duration::from_millis(100), c.recv()).await {
        saw_overrun |= item.unwrap() == ClientItem::Overrun;
    }
    assert!(saw_overrun, "the overrun is an item for recv");
    c.leave(group).unwrap();
    assert!(c.socket().memberships().unwrap().is_empty());
    drop(echo.join().unwrap());
}
