//! Deterministic tests of the sans-IO core: made-up datagrams from made-up ports and users, simulated time.

use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink::Credentials;
use cnlink_bus::core::{Action, Config, Core, Limits, Owner, RegisterError, SendError, Sender};
use cnlink_bus::policy::Policy;
use cnlink_bus::wire::{self as bw, BusOp, CtlMsg, ListPage, NotifyRange, Reply};

const ROOT: u32 = 0;
const ALICE: u32 = 1000;
const BOB: u32 = 1001;

fn who(port: u32, uid: u32) -> Sender {
    Sender { port, creds: Some(Credentials { pid: port as i32, uid, gid: uid }) }
}

fn msg(id: CbId, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, 0).unwrap()
}

fn ctl(seq: u32, data: &[u8]) -> Vec<u8> {
    msg(CbId::CONNECTOR, seq, 1000 + seq, data)
}

/// One datagram sent: (port, nlmsg_pid, header, data).
type Out = (u32, u32, CnMsgHdr, Vec<u8>);

/// Everything the core wants sent, one entry per destination port: (port, nlmsg_pid, header, data).
fn sent(core: &mut Core) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(t) = core.poll_transmit() {
        let nl = wire::NlMsg::new_checked(&t.datagram[..]).unwrap();
        let cn = wire::CnMsg::new_checked(nl.payload()).unwrap();
        for p in t.ports {
            out.push((p, nl.nlmsg_pid(), cn.header(), cn.data().to_vec()));
        }
    }
    out
}

fn events(core: &mut Core) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// Sends a control request and returns the errno of the bus's reply (checking seq/ack genealogy).
/// Also returns everything else the request made the core send.
fn op(core: &mut Core, now: Instant, from: Sender, seq: u32, data: &[u8]) -> (u32, Vec<u8>, Vec<Out>) {
    core.handle(now, from, &ctl(seq, data));
    let mut out = sent(core);
    let i = out.iter().position(|(p, _, h, _)| *p == from.port && h.id == CbId::CONNECTOR).unwrap();
    let (port, _, hdr, body) = out.remove(i);
    assert_eq!((port, hdr.seq, hdr.ack), (from.port, seq, 1000 + seq + 1), "same seq, ack + 1");
    let r = Reply::parse(&body).unwrap();
    (r.errno, r.body.to_vec(), out)
}

/// A core whose policy lets every user register any free id (the tests' users stand for trusting users).
fn core() -> Core {
    Core::new(Config { policy: Policy::open(), ..Config::default() })
}

#[test]
fn core_owns_its_id_and_ids_are_unique() {
    let mut c = core();
    assert_eq!(c.add_callback(CbId::CONNECTOR, "x"), Err(RegisterError::Duplicate));
    c.add_callback(CbId::new(14, 0x456), "cn_test").unwrap();
    assert_eq!(c.add_callback(CbId::new(14, 0x456), "again"), Err(RegisterError::Duplicate));
    c.add_callback(CbId::new(14, 0x457), "cn_test").unwrap();
    let t = Instant::now();
    let (errno, _, _) =
        op(&mut c, t, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(14, 0x456), name: "x".into() }.to_bytes());
    assert_eq!(errno, libc::EINVAL as u32, "the kernel answers a duplicate with EINVAL");
    assert_eq!(c.entry(CbId::new(14, 0x457)).unwrap().group, 14, "group = idx");
    assert_eq!(
        c.proc_text(),
        "Name            ID\nconnector       4294967295:4294967295\ncn_test         14:1110\ncn_test         14:1111\n"
    );
    assert!(c.del_callback(CbId::new(14, 0x456)));
    assert!(!c.del_callback(CbId::new(14, 0x456)), "deleting twice is a no-op");
    assert!(!c.del_callback(CbId::CONNECTOR), "the core's own id stays");
}

#[test]
fn routing_to_local_and_remote_owners_and_replies_back() {
    let t = Instant::now();
    let mut c = core();
    c.add_callback(CbId::new(20, 1), "local").unwrap();
    events(&mut c);
    // A message to a local callback becomes a delivery with the sender recorded.
    c.handle(t, who(7, BOB), &msg(CbId::new(20, 1), 5, 9, b"hi"));
    let ev = events(&mut c);
    let [Action::Deliver(d)] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!((d.hdr.seq, d.hdr.ack, &d.data[..], d.from.port), (5, 9, &b"hi"[..], 7));
    // A remote agent registers; requests to its id are forwarded with the requester's port as nlmsg_pid.
    assert_eq!(
        op(&mut c, t, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(30, 1), name: "agent".into() }.to_bytes()).0,
        0
    );
    c.handle(t, who(7, BOB), &msg(CbId::new(30, 1), 40, 100, b"ping"));
    assert_eq!(
        sent(&mut c),
        vec![(50, 7, CnMsgHdr { id: CbId::new(30, 1), seq: 40, ack: 100, len: 4, flags: 0 }, b"ping".to_vec())]
    );
    // The agent's reply (same seq, ack + 1) goes back to the requester only.
    c.join_for_test(99, 30);
    c.handle(t, who(50, ALICE), &msg(CbId::new(30, 1), 40, 101, b"pong"));
    let out = sent(&mut c);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].2.seq, out[0].2.ack, &out[0].3[..]), (7, 40, 101, &b"pong"[..]));
    // Anything else the owner sends on its id answers no request: it is dropped and counted, never sent to the
    // group, where anyone may listen.
    c.handle(t, who(50, ALICE), &msg(CbId::new(30, 1), 41, 0, b"counter = 1"));
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.stats().replies_unrouted, 1);
    // A group send is explicit: PUBLISH to group 0 goes to the id's group (idx 30), like cn_test's timer, and is
    // not answered.
    let publish = bw::publish_op(0, CnMsgHdr { id: CbId::new(30, 1), seq: 41, ..Default::default() }, b"counter = 1");
    c.handle(t, who(50, ALICE), &ctl(12, &publish.unwrap()));
    assert_eq!(sent(&mut c).iter().map(|o| (o.0, &o.3[..])).collect::<Vec<_>>(), vec![(99, &b"counter = 1"[..])]);
    // Nobody registered: dropped silently, counted.
    c.handle(t, who(7, BOB), &msg(CbId::new(31, 1), 1, 1, b""));
    assert!(sent(&mut c).is_empty());
    let s = c.stats();
    assert_eq!((s.unroutable, s.forwarded, s.replies_routed, s.delivered_local), (1, 1, 1, 1));
}

/// Test helper: subscribes `port` (uid BOB) to `group` through the JOIN op.
trait JoinForTest {
    fn join_for_test(&mut self, port: u32, group: u32);
}

impl JoinForTest for Core {
    fn join_for_test(&mut self, port: u32, group: u32) {
        let (errno, _, _) = op(self, Instant::now(), who(port, BOB), 77, &BusOp::Join { group }.to_bytes());
        assert_eq!(errno, 0);
    }
}

#[test]
fn send_group_zero_lookup_esrch_enodev_and_exclusion() {
    let mut c = core();
    let id = CbId::new(14, 0x457);
    let hdr = CnMsgHdr { id, seq: 1, ..Default::default() };
    assert_eq!(c.send(hdr, b"x", 0, 0), Err(SendError::NoDevice), "group 0 needs a registered id");
    c.add_callback(id, "cn_test").unwrap();
    assert_eq!(c.send(hdr, b"x", 0, 0), Err(SendError::NoListeners), "ESRCH when nobody listens on group 14");
    c.join_for_test(70, 14);
    c.join_for_test(71, 14);
    sent(&mut c);
    assert_eq!(c.send(hdr, b"counter = 1\0", 0, 0), Ok(2));
    let out = sent(&mut c);
    assert_eq!(out.iter().map(|o| o.0).collect::<Vec<_>>(), vec![70, 71]);
    assert_eq!(out[0].2.len, 12);
    assert_eq!(c.send(hdr, b"", 70, 14), Ok(1), "portid is excluded from a group send");
    assert_eq!(sent(&mut c)[0].0, 71);
    assert_eq!(c.send(hdr, b"", 5, 0), Ok(1), "group 0 with a portid is a unicast");
    assert_eq!(sent(&mut c)[0].0, 5);
    // Any group number works, 0xffffffff included; the SEND op excludes its sender. Bob sends on his own id.
    let bobs = CbId::new(15, 1);
    let hdr = CnMsgHdr { id: bobs, seq: 1, ..Default::default() };
    op(&mut c, Instant::now(), who(72, BOB), 2, &BusOp::Register { id: bobs, name: "bob".into() }.to_bytes());
    c.join_for_test(72, u32::MAX);
    c.join_for_test(73, u32::MAX);
    let send = bw::send_op(u32::MAX, hdr, b"all").unwrap();
    let (errno, _, out) = op(&mut c, Instant::now(), who(72, BOB), 3, &send);
    assert_eq!(errno, 0);
    let to: Vec<u32> = out.iter().filter(|o| o.2.id == bobs).map(|o| o.0).collect();
    assert_eq!(to, vec![73]);
    let nobody = bw::send_op(12345, hdr, b"").unwrap();
    assert_eq!(op(&mut c, Instant::now(), who(72, BOB), 4, &nobody).0, libc::ESRCH as u32);
}

#[test]
fn group_sends_carry_an_id_only_its_owner_or_root_may_use() {
    let t = Instant::now();
    let mut c = core();
    let alices = CbId::new(20, 1);
    op(&mut c, t, who(80, ALICE), 1, &BusOp::Register { id: alices, name: "alice".into() }.to_bytes());
    c.add_callback(CbId::new(21, 1), "local").unwrap();
    c.join_for_test(90, 20);
    sent(&mut c);
    let send = |id: CbId| bw::send_op(20, CnMsgHdr { id, ..Default::default() }, b"x").unwrap();
    let errno = |c: &mut Core, from: Sender, id: CbId| op(c, t, from, 9, &send(id)).0;
    // Bob may not forge Alice's id (nor a notification for it), an unregistered id, a local callback's id or
    // the bus's own id.
    for id in [alices, CbId::new(20, 2), CbId::new(21, 1), CbId::CONNECTOR] {
        assert_eq!(errno(&mut c, who(81, BOB), id), libc::EPERM as u32, "{id}");
    }
    assert_eq!(c.stats().denied, 4);
    // Alice may, from any of her sockets; root may send anything, the bus's id included.
    assert_eq!(errno(&mut c, who(80, ALICE), alices), 0);
    assert_eq!(errno(&mut c, who(82, ALICE), alices), 0);
    assert_eq!(errno(&mut c, who(83, ROOT), CbId::new(20, 2)), 0);
    assert_eq!(errno(&mut c, who(83, ROOT), CbId::CONNECTOR), 0);
    // A [[send]] rule naming Bob lets him use ids he did not register, but never the bus's own.
    let policy = Policy::from_toml(&format!("[[send]]\nuids = [{BOB}]\nidx = [20, 20]\n")).unwrap();
    let mut c = Core::new(Config { policy, ..Config::default() });
    c.join_for_test(90, 20);
    assert_eq!(errno(&mut c, who(81, BOB), CbId::new(20, 7)), 0);
    assert_eq!(errno(&mut c, who(81, BOB), CbId::new(21, 7)), libc::EPERM as u32);
    assert_eq!(errno(&mut c, who(81, BOB), CbId::CONNECTOR), libc::EPERM as u32);
}

/// cn_test's historical request: idx [0x123, +10), val [0x456, +10) and [0x46a, +10), group 1.
fn cn_test_req(group: u32) -> CtlMsg {
    CtlMsg {
        group,
        idx: vec![NotifyRange { first: 0x123, range: 10 }],
        val: vec![NotifyRange { first: 0x456, range: 10 }, NotifyRange { first: 0x46a, range: 10 }],
    }
}

#[test]
fn notifications_on_registration_and_removal_in_ranges() {
    let t = Instant::now();
    let mut c = core();
    // The request in its original bytes subscribes its sender to the group.
    assert_eq!(op(&mut c, t, who(60, BOB), 1, &cn_test_req(1).to_bytes()).0, 0);
    assert_eq!(c.subscribers(1), &[60]);
    c.add_callback(CbId::new(0x123, 0x46a), "in").unwrap();
    c.add_callback(CbId::new(0x12d, 0x456), "out: idx = first + range").unwrap();
    c.add_callback(CbId::new(0x123, 0x460), "out: val between ranges").unwrap();
    let out = sent(&mut c);
    assert_eq!(out, vec![(60, 0, CnMsgHdr { id: CbId::new(0x123, 0x46a), seq: 0, ack: 0, len: 0, flags: 0 }, vec![])]);
    // Removal notifies with ack 1.
    c.del_callback(CbId::new(0x123, 0x46a));
    let out = sent(&mut c);
    assert_eq!((out[0].2.id, out[0].2.ack), (CbId::new(0x123, 0x46a), 1));
    // A remote registration notifies too.
    let (_, _, out) =
        op(&mut c, t, who(61, ALICE), 2, &BusOp::Register { id: CbId::new(0x124, 0x457), name: "a".into() }.to_bytes());
    assert!(out.iter().any(|o| o.0 == 60 && o.2.id == CbId::new(0x124, 0x457) && o.2.ack == 0));
    assert_eq!(c.stats().notifications, 3);
}

#[test]
fn val_ranges_are_scanned_from_their_start() {
    // The original moved no cursor when an idx range matched: with two idx ranges, a match in the second made
    // the val scan start at the second *idx* range and miss the last val range. Ours does not.
    let t = Instant::now();
    let mut c = core();
    let req = CtlMsg {
        group: 5,
        idx: vec![NotifyRange { first: 1, range: 1 }, NotifyRange { first: 100, range: 1 }],
        val: vec![NotifyRange { first: 10, range: 1 }, NotifyRange { first: 20, range: 1 }],
    };
    assert_eq!(op(&mut c, t, who(60, BOB), 1, &req.to_bytes()).0, 0);
    c.add_callback(CbId::new(100, 20), "late ranges").unwrap();
    assert_eq!(sent(&mut c).len(), 1);
}

#[test]
fn group_zero_removes_and_group_all_ones_works() {
    let t = Instant::now();
    let mut c = core();
    assert_eq!(op(&mut c, t, who(60, BOB), 1, &cn_test_req(u32::MAX).to_bytes()).0, 0);
    c.add_callback(CbId::new(0x123, 0x456), "x").unwrap();
    assert_eq!(sent(&mut c)[0].0, 60, "group 0xffffffff is notified (the original could not)");
    // Another user cannot remove BOB's request; BOB can; then nothing is left to remove.
    assert_eq!(op(&mut c, t, who(61, ALICE), 2, &cn_test_req(0).to_bytes()).0, libc::ENOENT as u32);
    assert_eq!(op(&mut c, t, who(60, BOB), 3, &cn_test_req(0).to_bytes()).0, 0);
    assert_eq!(op(&mut c, t, who(60, BOB), 4, &cn_test_req(0).to_bytes()).0, libc::ENOENT as u32);
    assert_eq!(c.stats().notify_requests, 0);
    c.del_callback(CbId::new(0x123, 0x456));
    assert!(sent(&mut c).is_empty(), "removed requests notify no more");
    // Lengths that do not add up are rejected.
    let mut bad = cn_test_req(1).to_bytes();
    bad[12] = 8;
    assert_eq!(op(&mut c, t, who(60, BOB), 5, &bad).0, libc::EINVAL as u32);
}

#[test]
fn removing_a_notification_request_leaves_the_group_it_joined() {
    let t = Instant::now();
    let mut c = core();
    let req = |group: u32, first: u32| CtlMsg {
        group,
        idx: vec![NotifyRange { first, range: 1 }],
        val: vec![NotifyRange { first: 0, range: 1 }],
    };
    // Two of Bob's requests subscribe him to group 5; the subscription goes with the last of them.
    assert_eq!(op(&mut c, t, who(60, BOB), 1, &req(5, 100).to_bytes()).0, 0);
    assert_eq!(op(&mut c, t, who(60, BOB), 2, &req(5, 200).to_bytes()).0, 0);
    assert_eq!(c.subscribers(5), &[60]);
    assert_eq!(op(&mut c, t, who(60, BOB), 3, &req(0, 100).to_bytes()).0, 0);
    assert_eq!(c.subscribers(5), &[60], "another request of his still needs the group");
    assert_eq!(op(&mut c, t, who(60, BOB), 4, &req(0, 200).to_bytes()).0, 0);
    assert!(c.subscribers(5).is_empty());
    assert_eq!((c.stats().subscriptions, c.stats().clients, c.usage(BOB).subscriptions), (0, 0, 0));
    // Alice joined group 6 herself before her request, and Bob joins group 7 after his: both keep the group.
    op(&mut c, t, who(61, ALICE), 5, &BusOp::Join { group: 6 }.to_bytes());
    op(&mut c, t, who(61, ALICE), 6, &req(6, 300).to_bytes());
    op(&mut c, t, who(61, ALICE), 7, &req(0, 300).to_bytes());
    assert_eq!(c.subscribers(6), &[61]);
    op(&mut c, t, who(60, BOB), 8, &req(7, 400).to_bytes());
    op(&mut c, t, who(60, BOB), 9, &BusOp::Join { group: 7 }.to_bytes());
    op(&mut c, t, who(60, BOB), 10, &req(0, 400).to_bytes());
    assert_eq!(c.subscribers(7), &[60]);
}

#[test]
fn dead_client_is_cleaned_up_with_notifications() {
    let t = Instant::now();
    let mut c = core();
    op(&mut c, t, who(60, BOB), 1, &cn_test_req(9).to_bytes());
    op(&mut c, t, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(0x123, 0x456), name: "a".into() }.to_bytes());
    op(&mut c, t, who(50, ALICE), 2, &BusOp::Join { group: 3 }.to_bytes());
    op(&mut c, t, who(50, ALICE), 3, &cn_test_req(4).to_bytes());
    let ev = events(&mut c);
    assert!(ev.contains(&Action::Watch { port: 50, pid: 50 }), "a client with state is watched");
    sent(&mut c);
    c.handle(t, who(7, BOB), &msg(CbId::new(0x123, 0x456), 1, 1, b"req"));
    sent(&mut c);
    assert_eq!(c.usage(ALICE).ids, 1);
    c.client_gone(50);
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "one removal notification, to BOB's group 9 only");
    assert_eq!((out[0].0, out[0].2.id, out[0].2.ack), (60, CbId::new(0x123, 0x456), 1));
    assert!(c.entry(CbId::new(0x123, 0x456)).is_none());
    assert_eq!(c.usage(ALICE), Default::default(), "everything ALICE held is freed");
    assert!(events(&mut c).contains(&Action::Unwatch { port: 50 }));
    let s = c.stats();
    assert_eq!((s.clients_gone, s.subscriptions, s.notify_requests, s.routes), (1, 1, 1, 0));
    // A closed socket (ECONNREFUSED on a send to it) does the same.
    c.send_failed(60, libc::ECONNREFUSED);
    assert_eq!(c.stats().clients, 0);
    c.send_failed(61, libc::EAGAIN);
    assert_eq!(c.stats().dropped_full, 1);
}

#[test]
fn unprivileged_flood_stays_bounded() {
    let t = Instant::now();
    let limits = Limits::default();
    let mut c = core();
    // 100,000 distinct notification requests and registrations from one user, through many ports.
    for i in 0..100_000u32 {
        let port = 1000 + i % 500;
        let req = CtlMsg { group: i % 7 + 1, idx: vec![NotifyRange { first: i, range: 1 }], val: vec![] };
        c.handle(t, who(port, BOB), &ctl(i, &req.to_bytes()));
        c.handle(t, who(port, BOB), &ctl(i, &BusOp::Register { id: CbId::new(i, 7), name: "f".into() }.to_bytes()));
        c.handle(t, who(port, BOB), &ctl(i, &BusOp::Join { group: i }.to_bytes()));
        sent(&mut c);
        events(&mut c);
    }
    let u = c.usage(BOB);
    assert!(u.notify <= limits.notify_per_user && u.ids <= limits.ids_per_user, "{u:?}");
    assert!(u.subscriptions <= limits.subscriptions_per_user && u.clients <= limits.clients_per_user, "{u:?}");
    let s = c.stats();
    assert_eq!(s.notify_requests as usize, u.notify);
    assert!(s.over_limit > 250_000, "refusals are counted: {}", s.over_limit);
    // Identical requests are stored once.
    let mut c = core();
    for i in 0..1000 {
        c.handle(t, who(5, BOB), &ctl(i, &cn_test_req(1).to_bytes()));
    }
    assert_eq!((c.stats().notify_requests, c.stats().notify_dedup), (1, 999));
    // Reply routes are bounded per user too: a requester flooding an agent that never answers holds at most its
    // quota; each newer message makes room by dropping the oldest route, so none is refused.
    op(&mut c, t, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(3, 3), name: "slow".into() }.to_bytes());
    for i in 0..5000 {
        c.handle(t, who(6, BOB), &msg(CbId::new(3, 3), i, 0, b""));
    }
    assert_eq!(c.usage(BOB).routes, limits.routes_per_user);
    let out = sent(&mut c);
    assert_eq!(out.iter().filter(|o| o.0 == 50).count(), 5000, "every message forwarded");
    assert!(!out.iter().any(|o| o.0 == 6), "nothing refused");
    assert_eq!(c.stats().routes_evicted, 5000 - limits.routes_per_user as u64);
}

#[test]
fn routes_expire_with_simulated_time() {
    let t0 = Instant::now();
    let mut c = Core::new(Config { policy: Policy::open(), route_timeout: Some(Duration::from_secs(5)) });
    op(&mut c, t0, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(3, 3), name: "a".into() }.to_bytes());
    c.handle(t0, who(7, BOB), &msg(CbId::new(3, 3), 8, 8, b""));
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    c.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(c.stats().routes, 1);
    c.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!((c.stats().routes, c.stats().routes_expired, c.usage(BOB).routes), (0, 1, 0));
    c.join_for_test(99, 3);
    sent(&mut c);
    // The late reply is no longer a reply: it is dropped and counted, not sent to the owner's group.
    c.handle(t0 + Duration::from_secs(6), who(50, ALICE), &msg(CbId::new(3, 3), 8, 9, b""));
    assert!(sent(&mut c).is_empty());
    assert_eq!(c.stats().replies_unrouted, 1);
}

#[test]
fn policy_denials_are_answered_and_counted() {
    let t = Instant::now();
    let policy = Policy::from_toml("[[register]]\nuids = [1000]\nidx = [100, 199]\n[[send]]\nuids = [1000]\n").unwrap();
    let mut c = Core::new(Config { policy, ..Config::default() });
    let reg = |id| BusOp::Register { id, name: "n".into() }.to_bytes();
    assert_eq!(op(&mut c, t, who(50, ALICE), 1, &reg(CbId::new(150, 1))).0, 0);
    assert_eq!(op(&mut c, t, who(51, BOB), 2, &reg(CbId::new(151, 1))).0, libc::EPERM as u32);
    assert_eq!(op(&mut c, t, who(50, ALICE), 3, &reg(CbId::new(200, 1))).0, libc::EPERM as u32);
    assert_eq!(op(&mut c, t, who(52, ROOT), 4, &reg(CbId::new(5, 5))).0, 0, "root may register anything");
    // Only the registrant or root unregisters.
    let unreg = BusOp::Unregister { id: CbId::new(150, 1) }.to_bytes();
    assert_eq!(op(&mut c, t, who(51, BOB), 5, &unreg).0, libc::EPERM as u32);
    // BOB may not send to ids: answered on the control id with EPERM and the id.
    c.handle(t, who(51, BOB), &msg(CbId::new(150, 1), 9, 70, b"x"));
    let out = sent(&mut c);
    assert_eq!((out[0].0, out[0].2.id, out[0].2.seq, out[0].2.ack), (51, CbId::CONNECTOR, 9, 71));
    let r = Reply::parse(&out[0].3).unwrap();
    assert_eq!((r.op, r.errno, r.body.len()), (bw::BUS_OP_MESSAGE, libc::EPERM as u32, 8));
    assert_eq!(op(&mut c, t, who(52, ROOT), 6, &unreg).0, 0);
    assert_eq!(c.stats().denied, 4);
    assert_eq!(events(&mut c).iter().filter(|e| matches!(e, Action::Denied(_))).count(), 4);
}

#[test]
fn malformed_input_is_dropped_and_counted() {
    let t = Instant::now();
    let mut c = core();
    let good = msg(CbId::CONNECTOR, 1, 1, &BusOp::Stats.to_bytes());
    let mut lying = good.clone();
    lying[0] = 200; // nlmsg_len beyond the datagram
    let mut cn_lies = good.clone();
    cn_lies[32] = 0xff; // cn_msg.len beyond nlmsg_len
    let mut too_big = msg(CbId::new(1, 1), 1, 1, &[0; 16384]);
    too_big.truncate(16 + 16388);
    for d in [&[][..], &[1, 2, 3][..], &good[..20], &lying[..], &cn_lies[..], &too_big[..]] {
        c.handle(t, who(5, BOB), d);
    }
    assert_eq!(c.stats().malformed, 6);
    assert!(sent(&mut c).is_empty());
    // Unknown op: answered EOPNOTSUPP; a short op: EINVAL.
    assert_eq!(op(&mut c, t, who(5, BOB), 2, &bw::op_header(42)).0, libc::EOPNOTSUPP as u32);
    assert_eq!(op(&mut c, t, who(5, BOB), 3, &bw::op_header(bw::BUS_OP_REGISTER)).0, libc::EINVAL as u32);
    assert_eq!(c.stats().bad_control, 2);
    // Still serving.
    let (errno, body, _) = op(&mut c, t, who(5, BOB), 4, &BusOp::List { start: 0 }.to_bytes());
    assert_eq!(errno, 0);
    let page = ListPage::parse(&body).unwrap();
    assert_eq!(page.entries[0].id, CbId::CONNECTOR);
}

#[test]
fn a_reused_port_under_another_user_starts_fresh() {
    let t = Instant::now();
    let mut c = core();
    op(&mut c, t, who(50, ALICE), 1, &BusOp::Register { id: CbId::new(9, 9), name: "a".into() }.to_bytes());
    c.handle(t, who(50, BOB), &msg(CbId::new(1, 2), 1, 1, b""));
    assert!(c.entry(CbId::new(9, 9)).is_none(), "ALICE's socket is gone; her ids with it");
    assert!(events(&mut c).iter().any(|e| matches!(e, Action::Unregistered { owner: Owner::Remote(50), .. })));
}

#[test]
fn every_control_op_is_counted_by_kind() {
    let mut c = core();
    let now = Instant::now();
    let a = who(50, ALICE);
    let id = CbId::new(20, 1);
    op(&mut c, now, a, 1, &BusOp::Register { id, name: "x".into() }.to_bytes());
    op(&mut c, now, a, 2, &BusOp::Register { id, name: "again".into() }.to_bytes());
    op(&mut c, now, a, 3, &BusOp::Join { group: 20 }.to_bytes());
    op(&mut c, now, a, 4, &BusOp::Leave { group: 20 }.to_bytes());
    op(&mut c, now, a, 5, &BusOp::List { start: 0 }.to_bytes());
    op(&mut c, now, a, 6, &BusOp::Stats.to_bytes());
    op(&mut c, now, a, 7, &BusOp::Unregister { id }.to_bytes());
    let s = c.stats();
    assert_eq!(
        (s.op_register, s.op_join, s.op_leave, s.op_list, s.op_stats, s.op_unregister),
        (2, 1, 1, 1, 1, 1),
        "a refused request is counted as its op too"
    );
    assert_eq!((s.op_send, s.op_publish, s.op_notify), (0, 0, 0));
    assert_eq!(s.control, 7);
}
