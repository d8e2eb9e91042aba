//! The async drivers: a proc stream on the live kernel and request/reply over NETLINK_USERSOCK.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use cnlink::proc::{ProcItem, ProcOptions};
use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::tokio::{AsyncConnector, ProcStream};
use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, NlMsg};
use cnlink::{MatchRule, Trust};

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

#[tokio::test]
async fn async_request_reply_over_usersock() {
    let peer = Socket::open(Protocol::Usersock).unwrap();
    let to = NlAddr::port(peer.port());
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let meta = peer.recv(&mut buf).unwrap();
        let nl = NlMsg::new_checked(&buf[..meta.len]).unwrap();
        let cn = CnMsg::new_checked(nl.payload()).unwrap();
        let reply = wire::datagram(CnMsgHdr { ack: cn.ack().wrapping_add(1), ..cn.header() }, cn.data(), 0).unwrap();
        peer.send_to(&reply, meta.from).unwrap();
        peer
    });
    let mut c = AsyncConnector::open_with(Protocol::Usersock, to, MatchRule::Documented, Trust::PeerOnly).unwrap();
    let reply = c.request(CbId::new(14, 0x456), b"async", Duration::from_secs(5)).await.unwrap();
    assert_eq!(reply.data, b"async");
    let peer = echo.join().unwrap();
    let err = c.request(CbId::new(14, 0x456), b"none", Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(err, cnlink::Error::Timeout(_)), "{err}");
    drop(peer);
    let err = c.request(CbId::new(14, 0x456), b"gone", Duration::from_millis(50)).await.unwrap_err();
    assert!(matches!(&err, cnlink::Error::Io(e) if e.raw_os_error() == Some(libc::ECONNREFUSED)), "{err}");
}
