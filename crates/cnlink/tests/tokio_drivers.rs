//! The async drivers: a proc stream on the live kernel, and request/reply over NETLINK_USERSOCK: replies,
//! timeouts, a cancelled request whose reply comes late, overruns during a request, groups.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink::proc::{Path, ProcItem, ProcOptions, TapEvent};
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
async fn proc_stream_tap_sees_what_the_stream_decodes() {
    if !common::live_kernel() {
        return;
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let tap: cnlink::proc::Tap = Box::new({
        let (seen, sent) = (seen.clone(), sent.clone());
        move |ev| match ev {
            TapEvent::Received { path: Path::Main, meta, datagram } if meta.from.port == 0 => {
                seen.lock().unwrap().push(datagram.to_vec())
            }
            TapEvent::Sent { .. } => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    });
    let mut events = ProcStream::subscribe_with_tap(ProcOptions::default(), tap).await.unwrap();
    assert!(sent.load(Ordering::Relaxed) >= 1, "the LISTEN was tapped");
    let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), async {
        let mut items = Vec::new();
        loop {
            items.clear();
            events.recv_items(&mut items).await.unwrap();
            if let Some(e) = items.iter().find_map(|i| match i {
                ProcItem::Event(e) if matches!(e.data, EventData::Exit { process_pid, .. } if process_pid == pid) => {
                    Some(*e)
                }
                _ => None,
            }) {
                return e;
            }
        }
    })
    .await
    .expect("exit event within 10 s");
    let seen = seen.lock().unwrap();
    let tapped = seen.iter().any(|d| {
        let nl = NlMsg::new_checked(&d[..]).unwrap();
        let cn = CnMsg::new_checked(nl.payload()).unwrap();
        cn.seq() == exit.seq && cnlink::wire::ProcEvent::parse(cn.data()).is_ok_and(|ev| ev.data == exit.data)
    });
    assert!(tapped, "the datagram of the exit was tapped before it was decoded");
    assert_eq!(seen.len() as u64, events.stats().datagrams);
}

/// Threads started and joined one after the other on a blocking thread: a fork and an exit each.
async fn burst(threads: usize) {
    tokio::task::spawn_blocking(move || (0..threads).for_each(|_| std::thread::spawn(|| ()).join().unwrap()))
        .await
        .unwrap();
}

/// Reads until `done` says so (or 10 s pass); returns whether any item was an overrun.
async fn read_until(stream: &mut ProcStream, mut done: impl FnMut(&ProcStream) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut items, mut overrun) = (Vec::new(), false);
    while !done(stream) {
        let left = deadline.saturating_duration_since(Instant::now());
        items.clear();
        tokio::time::timeout(left, stream.recv_items(&mut items)).await.expect("within 10 s").unwrap();
        overrun |= items.contains(&ProcItem::Overrun);
    }
    overrun
}

/// Whether every subscription request the stream sent has had its ack.
fn all_acked(s: &ProcStream) -> bool {
    s.stats().own_acks >= s.stats().requests
}

#[test]
fn an_overrun_does_not_stall_a_current_thread_runtime() {
    if !common::live_kernel() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let affinity = rustix::thread::sched_getaffinity(None).unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // A small receive buffer (a dozen messages): a burst the stream does not read overruns it, while the few
        // events of other processes on the machine, and the acks of its own requests, still fit.
        let opts = ProcOptions { recv_buffer: 8 << 10, ..Default::default() };
        let mut stream = ProcStream::subscribe(opts).await.unwrap();
        if !common::kernel_at_least(6, 6) {
            // No resync before 6.6 (every LISTEN would count): the overrun is an item, the gaps show as events come.
            burst(300).await;
            assert!(read_until(&mut stream, |s| s.stats().overruns > 0 && s.stats().lost > 0).await);
            assert_eq!(stream.stats().resyncs, 0);
            assert_eq!(rustix::thread::sched_getaffinity(None).unwrap(), affinity);
            ticker.abort();
            return;
        }
        // A first overrun and its resync (held back until a second after the one at subscribing), so that the
        // resync of the next overrun is held back by the once-a-second limit too.
        burst(300).await;
        assert!(read_until(&mut stream, |s| s.stats().overruns > 0 && s.stats().resyncs >= 2).await);
        // Every request answered (they may all be already: the acks can come in the same read as the resync).
        read_until(&mut stream, all_acked).await;

        // The overrun under test: its resync waits for the limit; the runtime keeps running meanwhile.
        let before = stream.stats();
        burst(300).await;
        read_until(&mut stream, |s| s.stats().overruns > before.overruns).await;
        let ticks_at_overrun = ticks.load(Ordering::Relaxed);
        read_until(&mut stream, |s| s.stats().resyncs > before.resyncs).await;
        let ticked = ticks.load(Ordering::Relaxed) - ticks_at_overrun;
        assert!(ticked > 0, "the ticker did not run while the stream handled the overrun");
        // The resync's acks come back and the gaps show as losses.
        read_until(&mut stream, |s| all_acked(s) && s.stats().lost > before.lost).await;

        let c = stream.stats();
        assert!(c.resyncs >= 3, "subscribing and both overruns resynced: {c:?}");
        assert!(c.lost > 0, "the losses were counted: {c:?}");
        assert_eq!(rustix::thread::sched_getaffinity(None).unwrap(), affinity, "the runtime thread never moved");
        ticker.abort();
        eprintln!("ticked {ticked} times while the overrun was handled; {c:?}");
    });
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
