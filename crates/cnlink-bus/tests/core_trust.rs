//! The core's trust model between users, on the sans-IO core: replies reach only the requester they answer
//! (never the group), a request never takes the reply another socket waits for, one-way traffic is never refused
//! for lack of reply routes, and by default nobody but root can take an id another user's agent could need.

use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink::Credentials;
use cnlink_bus::core::{Config, Core, Limits, Sender};
use cnlink_bus::policy::{user_idx, Policy};
use cnlink_bus::wire::{self as bw, BusOp, Reply};

const ROOT: u32 = 0;
const ALICE: u32 = 1000;
const BOB: u32 = 1001;
const MALLORY: u32 = 1002;
/// The agent's id, its port and the eavesdropper's port.
const ID: CbId = CbId::new(30, 1);
const AGENT: u32 = 50;
const EAVESDROPPER: u32 = 99;

fn who(port: u32, uid: u32) -> Sender {
    Sender { port, creds: Some(Credentials { pid: port as i32, uid, gid: uid }) }
}

fn msg(id: CbId, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, 0).unwrap()
}

/// Everything queued for sending, one entry per destination port: (port, header, data).
fn sent(c: &mut Core) -> Vec<(u32, CnMsgHdr, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_transmit() {
        let (hdr, data) = cnlink_bus::core::first_cn_msg(&t.datagram).unwrap();
        out.extend(t.ports.iter().map(|&p| (p, hdr, data.to_vec())));
    }
    while c.poll_action().is_some() {}
    out
}

/// Runs a control op and returns the errno of its reply.
fn op(c: &mut Core, from: Sender, data: &[u8]) -> u32 {
    c.handle(Instant::now(), from, &msg(CbId::CONNECTOR, 1, 1, data));
    let out = sent(c);
    let (_, _, body) = out.iter().find(|(p, h, _)| *p == from.port && h.id == CbId::CONNECTOR).expect("a reply");
    Reply::parse(body).unwrap().errno
}

/// A core (default policy: root registers anything) with root's agent on `ID` at port `AGENT`, and an
/// eavesdropper (another user) on the id's group.
fn with_agent(config: Config) -> Core {
    let mut c = Core::new(config);
    assert_eq!(op(&mut c, who(AGENT, ROOT), &BusOp::Register { id: ID, name: "agent".into() }.to_bytes()), 0);
    assert_eq!(op(&mut c, who(EAVESDROPPER, MALLORY), &BusOp::Join { group: ID.idx }.to_bytes()), 0);
    c
}

#[test]
fn replies_that_answer_no_waiting_request_are_dropped_not_broadcast() {
    let t0 = Instant::now();
    let mut c = with_agent(Config { route_timeout: Some(Duration::from_secs(5)), ..Config::default() });
    // Alice asks; the agent answers by the documents' rule: only Alice gets it.
    c.handle(t0, who(7, ALICE), &msg(ID, 40, 100, b"secret?"));
    assert_eq!(sent(&mut c).iter().map(|o| o.0).collect::<Vec<_>>(), vec![AGENT]);
    c.handle(t0, who(AGENT, ROOT), &msg(ID, 40, 101, b"secret"));
    assert_eq!(sent(&mut c), vec![(7, CnMsgHdr { id: ID, seq: 40, ack: 101, len: 6, flags: 0 }, b"secret".to_vec())]);
    // A second reply, a reply by another rule (uvesafb's: same ack), and a reply after the route expired reach
    // nobody: not Alice, and not the group, where anyone may listen.
    c.handle(t0, who(AGENT, ROOT), &msg(ID, 40, 101, b"secret, again"));
    c.handle(t0, who(7, ALICE), &msg(ID, 41, 200, b"secret?"));
    c.handle(t0, who(AGENT, ROOT), &msg(ID, 41, 200, b"secret, same ack"));
    c.handle(t0, who(7, ALICE), &msg(ID, 42, 300, b"secret?"));
    sent(&mut c);
    c.handle_timeout(t0 + Duration::from_secs(5));
    c.handle(t0 + Duration::from_secs(6), who(AGENT, ROOT), &msg(ID, 42, 301, b"secret, late"));
    assert!(sent(&mut c).is_empty(), "a reply went somewhere");
    let s = c.stats();
    assert_eq!((s.replies_routed, s.replies_unrouted, s.fanout), (1, 3, 0));
    // A group message is explicit: PUBLISH (no reply) and SEND (answered) reach the group.
    let hdr = CnMsgHdr { id: ID, seq: 1, ..Default::default() };
    c.handle(t0, who(AGENT, ROOT), &msg(CbId::CONNECTOR, 2, 2, &bw::publish_op(0, hdr, b"news").unwrap()));
    assert_eq!(sent(&mut c), vec![(EAVESDROPPER, CnMsgHdr { len: 4, ..hdr }, b"news".to_vec())]);
    assert_eq!(op(&mut c, who(AGENT, ROOT), &bw::send_op(0, hdr, b"more news").unwrap()), 0);
    assert_eq!(c.stats().fanout, 2);
    // PUBLISH is never answered, not even a malformed one or a refusal; both are counted.
    let mut bad = bw::publish_op(0, hdr, b"x").unwrap();
    bad.pop();
    c.handle(t0, who(EAVESDROPPER, MALLORY), &msg(CbId::CONNECTOR, 3, 3, &bad));
    c.handle(t0, who(EAVESDROPPER, MALLORY), &msg(CbId::CONNECTOR, 4, 4, &bw::publish_op(0, hdr, b"forged").unwrap()));
    assert!(sent(&mut c).is_empty());
    assert_eq!((c.stats().bad_control, c.stats().denied), (1, 1));
}

#[test]
fn a_request_never_takes_the_reply_another_socket_waits_for() {
    let t = Instant::now();
    let mut c = with_agent(Config::default());
    // Alice follows the samples (ack 0, a counter for seq): predictable. Mallory sends the same seq and ack.
    c.handle(t, who(7, ALICE), &msg(ID, 1, 0, b"alice's question"));
    sent(&mut c);
    c.handle(t, who(8, MALLORY), &msg(ID, 1, 0, b"mallory's question"));
    let out = sent(&mut c);
    assert_eq!(out.len(), 1, "refused, not forwarded: {out:?}");
    let (port, hdr, body) = &out[0];
    assert_eq!((*port, hdr.id, hdr.seq, hdr.ack), (8, CbId::CONNECTOR, 1, 1));
    let r = Reply::parse(body).unwrap();
    assert_eq!((r.op, r.errno, r.body), (bw::BUS_OP_MESSAGE, libc::EBUSY as u32, &[30, 0, 0, 0, 1, 0, 0, 0][..]));
    // So is another socket of Alice's own.
    c.handle(t, who(9, ALICE), &msg(ID, 1, 0, b""));
    assert_eq!(sent(&mut c)[0].0, 9);
    // The reply goes to the socket that asked first.
    c.handle(t, who(AGENT, ROOT), &msg(ID, 1, 1, b"for alice"));
    assert_eq!(sent(&mut c).iter().map(|o| o.0).collect::<Vec<_>>(), vec![7]);
    // Once it is answered, the same seq and ack are free again; the same socket repeating a request keeps its
    // route (replaced, and counted).
    c.handle(t, who(8, MALLORY), &msg(ID, 1, 0, b""));
    c.handle(t, who(8, MALLORY), &msg(ID, 1, 0, b""));
    assert_eq!(sent(&mut c).iter().filter(|o| o.0 == AGENT).count(), 2);
    c.handle(t, who(AGENT, ROOT), &msg(ID, 1, 1, b"for mallory"));
    assert_eq!(sent(&mut c).iter().map(|o| o.0).collect::<Vec<_>>(), vec![8]);
    let s = c.stats();
    assert_eq!((s.routes_busy, s.route_collisions, s.replies_routed, s.routes), (2, 1, 2, 0));
    assert_eq!((c.usage(ALICE).routes, c.usage(MALLORY).routes), (0, 0));
}

#[test]
fn one_way_traffic_is_never_refused_and_requests_keep_their_routes() {
    let t = Instant::now();
    let limits = Limits::default();
    let mut c = with_agent(Config::default());
    // Bob asks a question on one socket, then sends 5000 one-way messages on another.
    c.handle(t, who(9, BOB), &msg(ID, 7, 7, b"question"));
    for i in 0..5000 {
        c.handle(t, who(6, BOB), &msg(ID, i, 0, b"event"));
    }
    let out = sent(&mut c);
    assert_eq!(out.iter().filter(|o| o.0 == AGENT).count(), 5001, "every message forwarded");
    assert!(!out.iter().any(|o| o.0 == 6), "nothing refused");
    assert_eq!(c.usage(BOB).routes, limits.routes_per_user, "still bounded");
    assert_eq!(c.stats().routes_evicted, 5001 - limits.routes_per_user as u64);
    // The flood used up its own socket's routes, not the question's: the answer still reaches Bob.
    c.handle(t, who(AGENT, ROOT), &msg(ID, 7, 8, b"answer"));
    assert_eq!(sent(&mut c).iter().map(|o| (o.0, o.2.clone())).collect::<Vec<_>>(), vec![(9, b"answer".to_vec())]);
    // A user whose sockets each send one message makes room with its oldest route.
    for port in 1000..1000 + limits.routes_per_user as u32 + 10 {
        c.handle(t, who(port, ALICE), &msg(ID, port, 5, b""));
    }
    assert_eq!(c.usage(ALICE).routes, limits.routes_per_user);
    c.handle(t, who(AGENT, ROOT), &msg(ID, 1000, 6, b""));
    assert!(sent(&mut c).iter().all(|o| o.0 == AGENT), "the oldest route was the one dropped");
    assert_eq!(c.stats().replies_unrouted, 1);
}

#[test]
fn by_default_only_root_takes_well_known_ids_and_each_user_has_its_own_idx() {
    let mut c = Core::new(Config::default());
    let reg = |id| BusOp::Register { id, name: "x".into() }.to_bytes();
    let (alices, bobs) = (user_idx(ALICE).unwrap(), user_idx(BOB).unwrap());
    // Mallory cannot squat a well-known id, nor any idx but her own.
    for id in [CbId::new(3, 1), CbId::new(14, 0x456), CbId::new(alices, 1), CbId::new(0x7fff_0000, 0)] {
        assert_eq!(op(&mut c, who(8, MALLORY), &reg(id)), libc::EPERM as u32, "{id}");
    }
    assert_eq!(op(&mut c, who(7, ALICE), &reg(CbId::new(alices, 1))), 0);
    assert_eq!(op(&mut c, who(7, ALICE), &reg(CbId::new(alices, 2))), 0, "any val of her idx");
    assert_eq!(op(&mut c, who(7, ALICE), &reg(CbId::new(bobs, 1))), libc::EPERM as u32);
    assert_eq!(op(&mut c, who(5, ROOT), &reg(CbId::new(14, 0x456))), 0);
    assert_eq!(c.stats().denied, 5);
    // While Alice's agent restarts, her ids are free, and still nobody else's to take.
    c.client_gone(7);
    assert_eq!(op(&mut c, who(8, MALLORY), &reg(CbId::new(alices, 1))), libc::EPERM as u32);
    // The policy can grant more: a service account gets one well-known id.
    let policy = Policy::from_toml(&format!("[[register]]\nuids = [{BOB}]\nidx = [3, 3]\nval = [1, 1]\n")).unwrap();
    let mut c = Core::new(Config { policy, ..Config::default() });
    assert_eq!(op(&mut c, who(9, BOB), &reg(CbId::new(3, 1))), 0);
    assert_eq!(op(&mut c, who(9, BOB), &reg(CbId::new(3, 2))), libc::EPERM as u32);
}
