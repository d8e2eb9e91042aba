//! The bus over real NETLINK_USERSOCK sockets: in-process callbacks, remote agents in other processes (under
//! other uids when root), notifications, dead clients, queue overflow, policy, restart.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink::wire::{CbId, CnMsgHdr};
use cnlink::ClientItem;
use cnlink_bus::core::Config;
use cnlink_bus::wire::{CtlMsg, NotifyRange};
use cnlink_bus::{Bus, BusClient, BusOptions, ClientError, Policy};
use common::*;

const T: Duration = Duration::from_secs(2);

fn stat(c: &mut BusClient, name: &str) -> u64 {
    c.stats().unwrap().into_iter().find(|(n, _)| n == name).unwrap().1
}

#[test]
fn in_process_callback_round_trip() {
    let h = start_bus(BusOptions::default());
    let id = CbId::new(14, 0x456);
    h.bus().add_callback(id, "cn_test", |ctx, d| ctx.reply(d, &d.data).unwrap()).unwrap();
    let mut c = BusClient::connect(h.bus().port()).unwrap();
    for i in 0..20u32 {
        let payload = format!("counter = {i}\0");
        let r = c.request(id, payload.as_bytes(), T).unwrap();
        assert_eq!(r.data, payload.as_bytes());
        assert_eq!(r.hdr.id, id);
        assert_eq!(r.from.port, h.bus().port());
    }
    let list = c.list().unwrap();
    assert_eq!(
        list.iter().map(|e| (e.id, e.name.as_str(), e.port)).collect::<Vec<_>>(),
        vec![(CbId::CONNECTOR, "connector", 0), (id, "cn_test", 0)]
    );
    assert_eq!(stat(&mut c, "delivered_local"), 20);
}

#[test]
fn remote_agent_request_reply_and_group_send() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let id = CbId::new(30, 7);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let agent = std::thread::spawn(move || {
        let mut a = BusClient::connect(port).unwrap();
        a.register(id, "echo").unwrap();
        tx.send(a.port()).unwrap();
        a.serve_echo(&[(id, "echo")], Duration::from_secs(1), |_| !stop2.load(Ordering::Relaxed)).unwrap()
    });
    let agent_port = rx.recv().unwrap();
    let mut c = BusClient::connect(port).unwrap();
    let mut sub = BusClient::connect(port).unwrap();
    if is_root() {
        // Room for bursts: the bus drops what a full client socket refuses.
        let granted = sub.connector().socket().recv_buffer().unwrap();
        assert!(granted >= cnlink_bus::CLIENT_RECV_BUFFER, "{granted}");
    }
    sub.join(30).unwrap();
    for i in 0..10 {
        let r = c.request(id, &[i; 3], T).unwrap();
        assert_eq!(r.data, vec![i; 3]);
    }
    assert!(c.list().unwrap().iter().any(|e| e.id == id && e.port == agent_port && e.group == 30));
    // A group send with group 0 goes to the id owner's group (30): the subscriber gets it, the sender does not.
    c.send_group(0, id, b"to group").unwrap();
    let m = sub.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap();
    assert_eq!((m.hdr.id, &m.data[..]), (id, &b"to group"[..]));
    // Nobody on group 31: ESRCH; an unregistered id with group 0: ENODEV; duplicates: EINVAL.
    assert_eq!(c.send_group(31, id, b"").unwrap_err().errno(), Some(libc::ESRCH as u32));
    assert_eq!(c.send_group(0, CbId::new(99, 9), b"").unwrap_err().errno(), Some(libc::ENODEV as u32));
    assert_eq!(c.register(id, "again").unwrap_err().errno(), Some(libc::EINVAL as u32));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(agent.join().unwrap().answered, 10);
}

#[test]
fn notifications_over_netlink_with_the_historical_request() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let mut watcher = BusClient::connect(port).unwrap();
    let req = CtlMsg {
        group: u32::MAX,
        idx: vec![NotifyRange { first: 0x123, range: 10 }],
        val: vec![NotifyRange { first: 0x456, range: 10 }],
    };
    watcher.notify(&req).unwrap();
    let mut agent = BusClient::connect(port).unwrap();
    agent.register(CbId::new(0x123, 0x457), "x").unwrap();
    agent.register(CbId::new(0x200, 0x457), "outside").unwrap();
    agent.unregister(CbId::new(0x123, 0x457)).unwrap();
    let a = watcher.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap();
    let b = watcher.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap();
    assert_eq!((a.hdr.id, a.hdr.seq, a.hdr.ack, a.hdr.len), (CbId::new(0x123, 0x457), 0, 0, 0));
    assert_eq!((b.hdr.id, b.hdr.ack), (CbId::new(0x123, 0x457), 1));
    assert!(watcher.recv(Some(Duration::from_millis(100))).unwrap().is_none(), "nothing outside the ranges");
    // Removal with group 0.
    watcher.notify(&CtlMsg { group: 0, ..req }).unwrap();
    agent.register(CbId::new(0x124, 0x458), "y").unwrap();
    assert!(watcher.recv(Some(Duration::from_millis(100))).unwrap().is_none());
}

#[test]
fn a_slow_callback_does_not_block_others_and_overflow_is_counted() {
    let h = start_bus(BusOptions { queue_len: 2, ..BusOptions::default() });
    let release = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let (r2, runs2) = (release.clone(), runs.clone());
    h.bus()
        .add_callback(CbId::new(40, 1), "slow", move |_, _| {
            while !r2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            runs2.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    h.bus().add_callback(CbId::new(40, 2), "fast", |ctx, d| ctx.reply(d, b"ok").unwrap()).unwrap();
    let mut c = BusClient::connect(h.bus().port()).unwrap();
    for _ in 0..20 {
        c.send(CbId::new(40, 1), b"work").unwrap();
    }
    let t0 = Instant::now();
    assert_eq!(c.request(CbId::new(40, 2), b"", T).unwrap().data, b"ok");
    assert!(t0.elapsed() < T, "the fast id answered while the slow one is stuck");
    // At most one running and two queued: the rest is dropped and counted.
    assert!(eventually(T, || h.bus().stats().dropped_local >= 17), "{:?}", h.bus().stats());
    release.store(true, Ordering::Relaxed);
    assert!(eventually(T, || runs.load(Ordering::Relaxed) + h.bus().stats().dropped_local == 20));
    assert!(runs.load(Ordering::Relaxed) >= 2, "the queued messages ran once released");
}

#[test]
fn inline_callback_round_trip_on_the_receive_thread() {
    let h = start_bus(BusOptions::default());
    let id = CbId::new(14, 0x457);
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let t2 = threads.clone();
    h.bus()
        .add_callback_inline(id, "cn_inline", move |ctx, d| {
            t2.lock().unwrap().push(std::thread::current().name().map(String::from));
            ctx.reply(d, &d.data).unwrap();
        })
        .unwrap();
    let mut c = BusClient::connect(h.bus().port()).unwrap();
    for i in 0..20u32 {
        let payload = format!("counter = {i}\0");
        let r = c.request(id, payload.as_bytes(), T).unwrap();
        assert_eq!((r.hdr.id, r.data.as_slice(), r.from.port), (id, payload.as_bytes(), h.bus().port()));
    }
    let names = threads.lock().unwrap().clone();
    assert_eq!(names.len(), 20);
    assert!(names.iter().all(|n| n.as_deref() == Some("cnlink-bus")), "ran on the receive thread: {names:?}");
    assert!(c.list().unwrap().iter().any(|e| e.id == id && e.name == "cn_inline" && e.port == 0));
    assert_eq!(stat(&mut c, "delivered_local"), 20);
    assert_eq!(stat(&mut c, "dropped_local"), 0);
}

#[test]
fn inline_callback_replies_by_the_documents_rule() {
    use cnlink::socket::{NlAddr, Protocol, Socket};
    let h = start_bus(BusOptions::default());
    let id = CbId::new(14, 0x458);
    h.bus().add_callback_inline(id, "cn_inline", |ctx, d| ctx.reply(d, b"pong").unwrap()).unwrap();
    let sock = Socket::open(Protocol::Usersock).unwrap();
    sock.set_passcred(true).unwrap();
    let hdr = CnMsgHdr { id, seq: 77, ack: 0x1234_5678, ..Default::default() };
    sock.send_to(&cnlink::wire::datagram(hdr, b"ping", 0).unwrap(), NlAddr::port(h.bus().port())).unwrap();
    assert!(sock.wait_readable(Some(T)).unwrap());
    let mut buf = [0u8; 256];
    let meta = sock.recv(&mut buf).unwrap();
    assert_eq!(meta.from, NlAddr::port(h.bus().port()));
    let nl = cnlink::wire::NlMsg::new_checked(&buf[..meta.len]).unwrap();
    let cn = cnlink::wire::CnMsg::new_checked(nl.payload()).unwrap();
    let r = cn.header();
    assert_eq!((r.id, r.seq, r.ack, r.len, cn.data()), (id, 77, 0x1234_5679, 4, &b"pong"[..]));
}

#[test]
fn inline_callback_may_send_to_a_group_and_a_panic_does_not_stop_the_bus() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    // Sending to a group takes the core's lock: an inline callback runs without it held, so this cannot deadlock.
    let id = CbId::new(42, 1);
    h.bus()
        .add_callback_inline(id, "fanout", |ctx, d| {
            let hdr = CnMsgHdr { ack: 0, len: 0, flags: 0, ..d.hdr };
            ctx.send(hdr, &d.data, 0, 42).unwrap();
        })
        .unwrap();
    let mut sub = BusClient::connect(port).unwrap();
    sub.join(42).unwrap();
    let mut c = BusClient::connect(port).unwrap();
    c.send(id, b"to all").unwrap();
    let m = sub.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap();
    assert_eq!((m.hdr.id, m.data.as_slice()), (id, &b"to all"[..]));
    // A panicking inline callback is caught; it is not called again and its messages count as dropped.
    let calls = Arc::new(AtomicU64::new(0));
    let calls2 = calls.clone();
    h.bus()
        .add_callback_inline(CbId::new(43, 1), "panics", move |_, _| {
            calls2.fetch_add(1, Ordering::Relaxed);
            panic!("test panic in an inline callback");
        })
        .unwrap();
    h.bus().add_callback_inline(CbId::new(43, 2), "fine", |ctx, d| ctx.reply(d, b"ok").unwrap()).unwrap();
    c.send(CbId::new(43, 1), b"boom").unwrap();
    c.send(CbId::new(43, 1), b"again").unwrap();
    assert_eq!(c.request(CbId::new(43, 2), b"", T).unwrap().data, b"ok");
    assert!(!h.is_finished(), "the run loop survived");
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert_eq!(h.bus().stats().dropped_local, 1);
}

#[test]
fn a_closed_client_socket_is_noticed_on_the_next_send() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let mut watcher = BusClient::connect(port).unwrap();
    watcher
        .notify(&CtlMsg {
            group: 5,
            idx: vec![NotifyRange { first: 50, range: 1 }],
            val: vec![NotifyRange { first: 0, range: u32::MAX }],
        })
        .unwrap();
    {
        let mut agent = BusClient::connect(port).unwrap();
        agent.register(CbId::new(50, 1), "short-lived").unwrap();
        assert_eq!(watcher.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap().hdr.ack, 0);
    } // socket closed; the process lives on, so only a send can tell
    let mut c = BusClient::connect(port).unwrap();
    c.send(CbId::new(50, 1), b"anyone?").unwrap();
    let gone = watcher.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap();
    assert_eq!((gone.hdr.id, gone.hdr.ack), (CbId::new(50, 1), 1));
    assert!(!c.list().unwrap().iter().any(|e| e.id == CbId::new(50, 1)));
}

#[test]
fn kill_9_of_an_agent_unregisters_its_ids_without_traffic() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let id = CbId::new(60, 1);
    let mut watcher = BusClient::connect(port).unwrap();
    watcher
        .notify(&CtlMsg {
            group: 60,
            idx: vec![NotifyRange { first: 60, range: 1 }],
            val: vec![NotifyRange { first: 1, range: 1 }],
        })
        .unwrap();
    let mut agent = spawn_agent(port, &[id], None).unwrap();
    assert_eq!(watcher.recv(Some(T)).unwrap().and_then(ClientItem::into_message).unwrap().hdr.ack, 0);
    let mut c = BusClient::connect(port).unwrap();
    assert_eq!(c.request(id, b"alive?", T).unwrap().data, b"alive?");
    agent.child.kill().unwrap(); // SIGKILL
    let t0 = Instant::now();
    let gone = watcher
        .recv(Some(T))
        .unwrap()
        .and_then(ClientItem::into_message)
        .expect("removal notified without any traffic to the agent");
    assert_eq!((gone.hdr.id, gone.hdr.ack), (id, 1));
    assert!(t0.elapsed() < T);
    assert!(!c.list().unwrap().iter().any(|e| e.id == id));
    assert_eq!(stat(&mut c, "clients_gone"), 1);
}

#[test]
fn agents_under_other_uids_and_policy_denials() {
    if !is_root() {
        return skip("needs root (to run agents under other uids)");
    }
    let policy = Policy::from_toml(
        "[[register]]\nuids = [65534]\nidx = [70, 79]\n[[register]]\nuids = [4242]\nidx = [80, 80]\n[[send]]\nuids = [65534, 4242]\n",
    )
    .unwrap();
    let h = start_bus(BusOptions { config: Config { policy, ..Config::default() }, ..BusOptions::default() });
    let port = h.bus().port();
    let a = spawn_agent(port, &[CbId::new(70, 1)], Some(65534)).unwrap();
    let b = spawn_agent(port, &[CbId::new(80, 1)], Some(4242)).unwrap();
    assert!(spawn_agent(port, &[CbId::new(71, 1)], Some(4242)).is_err(), "4242 may not register idx 71");
    let mut root = BusClient::connect(port).unwrap();
    let list = root.list().unwrap();
    let owner = |id| list.iter().find(|e| e.id == id).map(|e| (e.uid, e.port));
    assert_eq!(owner(CbId::new(70, 1)), Some((65534, a.port)));
    assert_eq!(owner(CbId::new(80, 1)), Some((4242, b.port)));
    // Messages carry kernel-verified credentials: each agent answers requests routed by the bus.
    assert_eq!(root.request(CbId::new(70, 1), b"x", T).unwrap().data, b"x");
    // A child that is neither may not send (policy) and may not unregister another user's id (default rule).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "uid_child_probe", "--nocapture", "--test-threads=1"])
        .env("CNLINK_BUS_PROBE_PORT", port.to_string())
        .env("CNLINK_BUS_PROBE_EXPECT", "denied")
        .uid_gid(31337)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("probe: denied as expected"));
    // Root may unregister anyone's id.
    root.unregister(CbId::new(80, 1)).unwrap();
    assert!(stat(&mut root, "denied") >= 5);
}

trait UidGid {
    fn uid_gid(&mut self, id: u32) -> &mut Self;
}

impl UidGid for std::process::Command {
    fn uid_gid(&mut self, id: u32) -> &mut Self {
        std::os::unix::process::CommandExt::uid(self, id);
        std::os::unix::process::CommandExt::gid(self, id)
    }
}

/// Runs inside the child of `agents_under_other_uids_and_policy_denials` (as uid 31337); on its own, checks
/// the same refusals against a bus of its own.
#[test]
fn uid_child_probe() {
    let (_h, port) = match std::env::var("CNLINK_BUS_PROBE_PORT") {
        Ok(p) => (None, p.parse().unwrap()),
        Err(_) => {
            // Standalone: a bus with a policy that grants nothing to this user.
            let me = rustix::process::geteuid().as_raw();
            let policy =
                Policy::from_toml(&format!("[[register]]\nuids = [{}]\n[[send]]\nuids = [{}]\n", me + 1, me + 1));
            let h = start_bus(BusOptions {
                config: Config { policy: policy.unwrap(), ..Config::default() },
                ..BusOptions::default()
            });
            let port = h.bus().port();
            if me == 0 {
                // Root is never refused; nothing to probe as root standalone beyond that.
                let mut c = BusClient::connect(port).unwrap();
                c.register(CbId::new(1, 1), "root").unwrap();
                return;
            }
            h.bus().add_callback(CbId::new(70, 1), "x", |_, _| {}).unwrap();
            (Some(h), port)
        }
    };
    let mut c = BusClient::connect(port).unwrap();
    let e = c.request(CbId::new(70, 1), b"x", T).unwrap_err();
    assert!(matches!(e, ClientError::Refused { errno, .. } if errno == libc::EPERM as u32), "{e}");
    let e = c.unregister(CbId::new(70, 1)).unwrap_err();
    assert_eq!(e.errno(), Some(libc::EPERM as u32));
    let e = c.register(CbId::new(75, 1), "nope").unwrap_err();
    assert_eq!(e.errno(), Some(libc::EPERM as u32));
    // Nor may it forge group messages carrying another owner's id (a fake notification) or the bus's own id.
    for id in [CbId::new(70, 1), CbId::CONNECTOR] {
        assert_eq!(c.send_group(70, id, b"").unwrap_err().errno(), Some(libc::EPERM as u32), "{id}");
    }
    println!("probe: denied as expected");
}

#[test]
fn daemon_restart_with_agents_reconnecting() {
    // A fixed port, as a real daemon has; chosen per process so parallel test runs do not collide.
    let port = 0x636E_0000 | (std::process::id() & 0xffff);
    let id = CbId::new(90, 1);
    let bus = Bus::bind(BusOptions { port, ..BusOptions::default() }).unwrap();
    let h = bus.spawn().unwrap();
    drop(bus);
    let _agent = spawn_agent(port, &[id], None).unwrap();
    let mut c = BusClient::connect(port).unwrap();
    assert_eq!(c.request(id, b"before", T).unwrap().data, b"before");
    h.stop().unwrap();
    assert!(c.request(id, b"while down", Duration::from_millis(200)).is_err());
    let h = Bus::bind(BusOptions { port, ..BusOptions::default() }).unwrap().spawn().unwrap();
    assert!(
        eventually(Duration::from_secs(3), || c.list().is_ok_and(|l| l.iter().any(|e| e.id == id))),
        "the agent registered again"
    );
    assert_eq!(c.request(id, b"after", T).unwrap().data, b"after");
    h.stop().unwrap();
}

#[test]
fn malformed_datagrams_are_counted_and_the_bus_keeps_serving() {
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    h.bus().add_callback(CbId::new(1, 2), "echo", |ctx, d| ctx.reply(d, &d.data).unwrap()).unwrap();
    let raw = cnlink::socket::Socket::open(cnlink::socket::Protocol::Usersock).unwrap();
    let to = cnlink::socket::NlAddr::port(port);
    let good = cnlink::wire::datagram(CnMsgHdr { id: CbId::new(1, 2), ..Default::default() }, b"abcd", 0).unwrap();
    let mut lying = good.clone();
    lying[32] = 200;
    let sent = AtomicU64::new(0);
    for d in [&[1u8, 2, 3][..], &[0u8; 8][..], &good[..30], &lying[..], &[0xffu8; 64][..]] {
        raw.send_to(d, to).unwrap();
        sent.fetch_add(1, Ordering::Relaxed);
    }
    let mut c = BusClient::connect(port).unwrap();
    assert_eq!(c.request(CbId::new(1, 2), b"still here", T).unwrap().data, b"still here");
    assert_eq!(stat(&mut c, "malformed"), sent.load(Ordering::Relaxed));
}
