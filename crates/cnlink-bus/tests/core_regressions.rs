//! Regressions found by the `bus_input` fuzz target (fuzz/fuzz_targets/bus_input.rs), replayed on the sans-IO core
//! with the datagrams of the minimized inputs. The same inputs are kept as seeds in fuzz/seeds/bus_input/.

use std::time::{Duration, Instant};

use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink::Credentials;
use cnlink_bus::core::{first_cn_msg, Config, Core, SendError, Sender, Transmit, Usage, UNKNOWN_UID};
use cnlink_bus::policy::Policy;
use cnlink_bus::wire::{self as bw, BusOp, CtlMsg, Reply};

fn who(port: u32, uid: Option<u32>) -> Sender {
    Sender { port, creds: uid.map(|uid| Credentials { pid: port as i32, uid, gid: uid }) }
}

fn msg(id: CbId, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, 0).unwrap()
}

fn drain(c: &mut Core) {
    while c.poll_transmit().is_some() {}
    while c.poll_action().is_some() {}
}

/// A core whose policy lets every user register any free id, as the default did when these were found.
fn open_core() -> Core {
    Core::new(Config { policy: Policy::open(), ..Config::default() })
}

/// Reply routes: a route recorded by the insert that compacted the expiry queue was left out of the queue, so it
/// never expired and held one of its user's `routes_per_user` for good (and `poll_timeout` forgot it).
/// Fuzz input: an agent registers {0x123, 0x456}; another user sends it 67 requests with the same seq and ack.
#[test]
fn a_route_recorded_while_the_expiry_queue_is_compacted_still_expires() {
    let t0 = Instant::now();
    let (agent, requester) = (who(1, Some(1000)), who(2, Some(1001)));
    let id = CbId::new(0x123, 0x456);
    let mut c = open_core();
    c.handle(t0, agent, &msg(CbId::CONNECTOR, 0, 0, &BusOp::Register { id, name: String::new() }.to_bytes()));
    for _ in 0..67 {
        c.handle(t0, requester, &msg(id, 1, 1, b""));
    }
    drain(&mut c);
    assert_eq!((c.stats().routes, c.stats().route_collisions), (1, 66));
    assert!(c.poll_timeout().is_some(), "a route waits: the timer is armed");
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!((c.stats().routes, c.usage(1001).routes), (0, 0), "the route expired");

    // The same with distinct requests: 66 answered at once, then one the agent never answers.
    for seq in 0..66 {
        c.handle(t0, requester, &msg(id, seq, 7, b"q"));
        c.handle(t0, agent, &msg(id, seq, 8, b"a"));
    }
    c.handle(t0, requester, &msg(id, 66, 7, b"q"));
    drain(&mut c);
    assert_eq!((c.stats().replies_routed, c.stats().routes), (66, 1));
    assert_eq!(c.poll_timeout().map(|t| t >= t0), Some(true));
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert_eq!((c.stats().routes, c.usage(1001).routes), (0, 0), "the unanswered request's route expired");
}

/// Per-user accounting: a port known under uid 1000 that then sent without credentials (uid [`UNKNOWN_UID`])
/// took a subscription for the unknown uid, and leaving gave it back to uid 1000: one user's count drifted down
/// (past its limit), the other's stayed up forever. Fuzz input: two `cn_ctl_msg`s from port 3, group 3 with
/// credentials of uid 1000, group 0x123 without credentials.
#[test]
fn a_port_that_loses_its_credentials_is_counted_as_another_user() {
    let t = Instant::now();
    let req = |group| CtlMsg { group, idx: vec![], val: vec![] }.to_bytes();
    let mut c = open_core();
    c.handle(t, who(3, Some(1000)), &msg(CbId::CONNECTOR, 0x5a, 0x5a, &req(3)));
    assert_eq!(c.usage(1000), Usage { subscriptions: 1, notify: 1, clients: 1, ..Usage::default() });
    c.handle(t, who(3, None), &msg(CbId::CONNECTOR, 0, 0, &req(0x123)));
    assert_eq!(c.usage(1000), Usage::default(), "the uid-1000 client is gone");
    assert_eq!(c.usage(UNKNOWN_UID), Usage { subscriptions: 1, notify: 1, clients: 1, ..Usage::default() });
    assert_eq!(c.subscribers(3), &[] as &[u32]);
    c.client_gone(3);
    drain(&mut c);
    assert_eq!((c.usage(1000), c.usage(UNKNOWN_UID)), (Usage::default(), Usage::default()));
    let s = c.stats();
    assert_eq!((s.subscriptions, s.notify_requests, s.clients, s.users), (0, 0, 0, 0));
}

/// The same with the bus ops: JOIN under uid 1000, JOIN without credentials, LEAVE both.
#[test]
fn join_and_leave_across_a_change_of_credentials_balance() {
    let t = Instant::now();
    let op = |op: BusOp| msg(CbId::CONNECTOR, 1, 1, &op.to_bytes());
    let mut c = open_core();
    c.handle(t, who(3, Some(1000)), &op(BusOp::Join { group: 3 }));
    c.handle(t, who(3, None), &op(BusOp::Join { group: 7 }));
    c.handle(t, who(3, None), &op(BusOp::Leave { group: 7 }));
    c.handle(t, who(3, None), &op(BusOp::Leave { group: 3 }));
    drain(&mut c);
    assert_eq!((c.usage(1000), c.usage(UNKNOWN_UID)), (Usage::default(), Usage::default()));
    assert_eq!((c.stats().subscriptions, c.stats().users), (0, 0));
}

/// Group 0 of an id whose idx is 0: `Core::send(hdr, data, 0, 0)` (an in-daemon callback sending to its owner's
/// group) queued a datagram for port 0, and a SEND op with group 0 was delivered back to its own sender. Both
/// are `ESRCH` now: nobody can join group 0. Fuzz input: `add_callback({0, 0})`, then `send({0, 0}, 0, 0)`.
#[test]
fn the_owners_group_of_an_idx_0_id_has_no_listeners() {
    let t = Instant::now();
    let mut c = open_core();
    c.add_callback(CbId::new(0, 0), "local").unwrap();
    assert_eq!(c.send(CnMsgHdr { id: CbId::new(0, 0), ..Default::default() }, b"", 0, 0), Err(SendError::NoListeners));
    assert!(c.poll_transmit().is_none(), "nothing for port 0");

    let agent = who(1, Some(1000));
    let id = CbId::new(0, 5);
    c.handle(t, agent, &msg(CbId::CONNECTOR, 1, 1, &BusOp::Register { id, name: String::new() }.to_bytes()));
    drain(&mut c);
    let send = bw::send_op(0, CnMsgHdr { id, ..Default::default() }, b"x").unwrap();
    c.handle(t, agent, &msg(CbId::CONNECTOR, 2, 2, &send));
    let out: Vec<Transmit> = std::iter::from_fn(|| c.poll_transmit()).collect();
    assert_eq!(out.len(), 1, "only the reply: {out:?}");
    let (hdr, data) = first_cn_msg(&out[0].datagram).unwrap();
    assert_eq!((out[0].ports.as_slice(), hdr.id), (&[1][..], CbId::CONNECTOR));
    assert_eq!(Reply::parse(data).unwrap().errno, libc::ESRCH as u32);
    assert_eq!(c.stats().esrch, 2);
}
