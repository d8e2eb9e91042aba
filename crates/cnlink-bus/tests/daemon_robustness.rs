//! The daemon under conditions that used to hurt it: one-way traffic beyond the reply-route quota, a blocked
//! stderr while a user makes it log, overruns of its own socket, callbacks that panic, replies to a client that
//! does not read.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, group_mask, CbId, CnMsgHdr};
use cnlink::ClientItem;
use cnlink_bus::core::{Config, SendError};
use cnlink_bus::{Bus, BusClient, BusHandle, BusOptions, Policy};
use common::*;

const T: Duration = Duration::from_secs(5);

fn stat(c: &mut BusClient, name: &str) -> u64 {
    c.stats().unwrap().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no counter {name}")).1
}

/// A bus that lets every user register any free id, so that these tests run as any user.
fn open_bus(opts: BusOptions) -> BusHandle {
    start_bus(BusOptions { config: Config { policy: Policy::open(), ..opts.config.clone() }, ..opts })
}

#[test]
fn five_thousand_one_way_messages_from_one_user_are_all_delivered() {
    let h = open_bus(BusOptions::default());
    let port = h.bus().port();
    let id = CbId::new(33, 1);
    let (events, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let (events2, stop2) = (events.clone(), stop.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    // The agent counts one-way events and answers questions.
    let agent = std::thread::spawn(move || {
        let mut a = BusClient::connect(port).unwrap();
        a.register(id, "counter").unwrap();
        tx.send(()).unwrap();
        while !stop2.load(Ordering::Relaxed) {
            let Some(ClientItem::Message(m)) = a.recv(Some(Duration::from_millis(50))).unwrap() else { continue };
            if m.data == b"event" {
                events2.fetch_add(1, Ordering::Relaxed);
            } else {
                a.reply(&m, &m.data).unwrap();
            }
        }
    });
    rx.recv().unwrap();
    let mut c = BusClient::connect(port).unwrap();
    let mut asker = BusClient::connect(port).unwrap();
    // 5000 events well within the 10 s a route lives, in bursts the agent's socket holds, with questions between
    // them from another socket of the same user, and from the same socket.
    for burst in 1..=10u64 {
        for _ in 0..500 {
            c.send(id, b"event").unwrap();
        }
        assert_eq!(asker.request(id, b"question", T).unwrap().data, b"question");
        assert!(eventually(T, || events.load(Ordering::Relaxed) >= burst * 500), "burst {burst}: {events:?}");
    }
    assert_eq!(c.request(id, b"last question", T).unwrap().data, b"last question");
    stop.store(true, Ordering::Relaxed);
    agent.join().unwrap();
    assert_eq!(events.load(Ordering::Relaxed), 5000);
    let s = h.bus().stats();
    assert_eq!((s.forwarded, s.over_limit, s.dropped_full), (5000 + 11, 0, 0), "{s:?}");
    // Every forwarded message took a route: answered, dropped for a newer one, or still waiting within the quota.
    assert_eq!(s.replies_routed + s.routes_evicted + s.routes, s.forwarded, "{s:?}");
    assert!(s.routes <= 1024 && s.routes_evicted > 0, "{s:?}");
}

/// The child of `a_blocked_stderr_never_stops_the_bus`: a bus whose log queue holds 8 lines, on the port given,
/// running until killed.
fn log_daemon(port: u32) {
    let bus = Bus::bind(BusOptions { port, log_queue: 8, ..BusOptions::default() }).unwrap();
    // On a line of its own: libtest has already printed "test NAME ... " without a newline.
    println!("\nready");
    bus.run().unwrap();
}

#[test]
fn a_blocked_stderr_never_stops_the_bus() {
    if let Ok(port) = std::env::var("CNLINK_BUS_LOG_DAEMON_PORT") {
        return log_daemon(port.parse().unwrap());
    }
    // The daemon's stderr is a pipe of one page that nobody reads: about 30 lines fill it, and then every write
    // to it blocks.
    let (unread, stderr) = rustix::pipe::pipe().unwrap();
    rustix::pipe::fcntl_setpipe_size(&stderr, 4096).unwrap();
    let port = 0x636E_0000 | (std::process::id() & 0xffff) ^ 0x1a55;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_blocked_stderr_never_stops_the_bus", "--nocapture", "--test-threads=1"])
        .env("CNLINK_BUS_LOG_DAEMON_PORT", port.to_string())
        .env_remove("CI")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let ready = std::iter::from_fn(|| {
        let mut l = String::new();
        (out.read_line(&mut l).ok()? > 0).then_some(l)
    })
    .any(|l| l.trim() == "ready");
    let daemon = Agent { child, port };
    assert!(ready, "the daemon did not start");
    // A user makes the bus refuse, and log, thousands of requests; each refusal is answered all the same.
    let mut c = BusClient::connect(port).unwrap();
    c.wait_for_bus(T).unwrap();
    c.set_timeout(T);
    for i in 0..3000 {
        let e = c.unregister(CbId::new(1, i)).unwrap_err();
        assert_eq!(e.errno(), Some(libc::ENOENT as u32), "request {i}: {e}");
    }
    h_serves(&mut c);
    assert!(stat(&mut c, "log_dropped") > 0, "lines were dropped, not waited for");
    drop(unread);
    drop(daemon);
}

/// The bus at `c` still answers.
fn h_serves(c: &mut BusClient) {
    assert!(c.list().unwrap().iter().any(|e| e.id == CbId::CONNECTOR));
}

#[test]
fn the_daemons_own_overruns_are_counted() {
    if !is_root() {
        return skip("needs root (to multicast on NETLINK_USERSOCK into the bus's socket)");
    }
    // The smallest receive buffer, in a multicast group: a root sender's broadcast that finds it full marks an
    // overrun, which the bus's next receive reports as ENOBUFS.
    let h = open_bus(BusOptions { recv_buffer: 0, ..BusOptions::default() });
    let group = 23;
    h.bus().socket().add_membership(group).unwrap();
    // An inline callback holds the receive thread until released, so that nothing is read meanwhile.
    let (entered, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (entered2, release2) = (entered.clone(), release.clone());
    let stall = CbId::new(40, 1);
    h.bus()
        .add_callback_inline(stall, "stall", move |_, _| {
            entered2.store(true, Ordering::Relaxed);
            while !release2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    h.bus().add_callback_inline(CbId::new(40, 2), "echo", |ctx, d| ctx.reply(d, &d.data).unwrap()).unwrap();
    let raw = Socket::open(Protocol::Usersock).unwrap();
    let to_bus = NlAddr::port(h.bus().port());
    let d = wire::datagram(CnMsgHdr { id: stall, ..Default::default() }, b"", 0).unwrap();
    raw.send_to(&d, to_bus).unwrap();
    assert!(eventually(T, || entered.load(Ordering::Relaxed)), "the receive thread is held");
    let d = wire::datagram(CnMsgHdr { id: CbId::new(41, 1), ..Default::default() }, &[0; 256], 0).unwrap();
    for _ in 0..200 {
        // Delivered to the group, then refused for port 0 (ECONNREFUSED): NETLINK_USERSOCK has no kernel socket.
        let _ = raw.send_to(&d, NlAddr { port: 0, groups: group_mask(group).unwrap() });
    }
    release.store(true, Ordering::Relaxed);
    let mut c = BusClient::connect(h.bus().port()).unwrap();
    assert!(eventually(T, || stat(&mut c, "overruns") >= 1), "{:?}", h.bus().stats());
    assert_eq!(c.request(CbId::new(40, 2), b"still here", T).unwrap().data, b"still here");
}

#[test]
fn a_worker_callback_that_panics_is_counted_and_keeps_serving() {
    let h = open_bus(BusOptions::default());
    let id = CbId::new(44, 1);
    h.bus()
        .add_callback(id, "fragile", |ctx, d| {
            assert!(d.data != b"boom", "test panic in a worker callback");
            ctx.reply(d, &d.data).unwrap();
        })
        .unwrap();
    let mut c = BusClient::connect(h.bus().port()).unwrap();
    for round in 1..=3 {
        c.send(id, b"boom").unwrap();
        assert_eq!(c.request(id, b"fine", T).unwrap().data, b"fine", "round {round}");
    }
    assert!(eventually(T, || h.bus().stats().callback_panics == 3), "{:?}", h.bus().stats());
    assert_eq!(h.bus().stats().dropped_local, 0);
}

#[test]
fn a_reply_to_a_client_that_does_not_read_reports_the_full_queue() {
    let h = open_bus(BusOptions::default());
    let id = CbId::new(45, 1);
    let results = Arc::new(Mutex::new(Vec::new()));
    let results2 = results.clone();
    h.bus().add_callback(id, "replier", move |ctx, d| results2.lock().unwrap().push(ctx.reply(d, &[0; 1024]))).unwrap();
    // A requester with the smallest receive buffer that never reads.
    let raw = Socket::open(Protocol::Usersock).unwrap();
    raw.set_recv_buffer(0).unwrap();
    let d = wire::datagram(CnMsgHdr { id, ..Default::default() }, b"q", 0).unwrap();
    for _ in 0..100 {
        raw.send_to(&d, NlAddr::port(h.bus().port())).unwrap();
    }
    assert!(eventually(T, || results.lock().unwrap().len() == 100));
    let results = results.lock().unwrap();
    assert!(results[0].is_ok(), "the first replies fit");
    assert!(results.contains(&Err(SendError::Full)), "{results:?}");
    assert_eq!(h.bus().stats().dropped_full, results.iter().filter(|r| r.is_err()).count() as u64);
}

#[test]
fn the_heartbeat_turns_when_idle_and_stops_when_the_loop_is_stuck() {
    let h = open_bus(BusOptions::default());
    let bus = h.bus().clone();
    // Idle: no traffic at all, and still the loop turns.
    let before = bus.heartbeat();
    assert!(eventually(Duration::from_secs(10), || bus.heartbeat() >= before + 2), "an idle loop stopped turning");
    // An inline callback that blocks (which it must not) holds the loop: the heartbeat stops.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Mutex::new(held);
    let id = CbId::new(34, 1);
    bus.add_callback_inline(id, "stuck", move |_ctx, _d| {
        let _ = held.lock().unwrap().recv();
    })
    .unwrap();
    let mut c = BusClient::connect(bus.port()).unwrap();
    c.send(id, b"hold").unwrap();
    // Stuck: three heartbeat periods without a turn (checked until the callback has the loop).
    let still_for_three_beats = || {
        let now = bus.heartbeat();
        std::thread::sleep(3 * cnlink_bus::daemon::HEARTBEAT);
        bus.heartbeat() == now
    };
    assert!(eventually(Duration::from_secs(15), still_for_three_beats), "the heartbeat turned while the loop was held");
    release.send(()).unwrap();
    let resumed = bus.heartbeat();
    assert!(eventually(Duration::from_secs(10), || bus.heartbeat() > resumed), "the loop did not turn again");
}
