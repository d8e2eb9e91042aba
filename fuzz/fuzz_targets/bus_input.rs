//! The bus daemon's input path without IO: a `cnlink_bus::Core` (two local callbacks, the default or a tight
//! configuration) is fed datagrams from made-up senders, with time passing, clients going away and sends failing,
//! and every output is checked: each transmitted datagram parses, each control request gets exactly one reply
//! that decodes and whose errno is one the protocol documents (docs/bus-protocol.md), per-user usage stays within
//! the limits and adds up to the core's gauges, no reply route outlives its timeout, and once every client is
//! gone nothing is held. The pure decoders (`CtlMsg`, `Request`, `Reply`, `ListPage`, `parse_stats`) see the
//! whole input and every datagram's data.
//!
//! The trust model is checked too: an id's owner's message reaches at most the one requester it answers (never a
//! group), a data message is forwarded or refused (`EPERM`, `EBUSY`; never for a limit), PUBLISH is never answered.
//!
//! Input: one config byte (bit 0: tight limits, bit 1: a policy with grants, bit 2: 1 s route timeout, bit 3:
//! remote agents answer the requests forwarded to them, except those whose seq is a multiple of 4; bit 4: the
//! default policy, where users register only their own idx, else everyone may register any id), then records
//! until the bytes run out. A record starts with a byte `k`: `k & 7` is the action, `k >> 5` a repeat count (1, 1,
//! 1, 1, 2, 8, 70, 300: enough to fill queues and hit limits), and bit 3 makes a repeated framed message count its
//! seq up:
//!
//! ```text
//! 0  framed message   sender id seq ack len data[len]         (the harness frames nlmsghdr + cn_msg)
//! 1  bus op           sender code fields... seq ack            (built with cnlink_bus's encoders)
//! 2  cn_ctl_msg       sender group nidx nval (first range)*   seq ack
//! 3  raw datagram     sender len:u16le bytes[len]              (any bytes; the seeds are of this kind)
//! 4  time passes      tenths of a second, then handle_timeout
//! 5  client_gone      port
//! 6  send_failed      port errno
//! 7  kernel-side API  add_callback / del_callback / Core::send
//! ```
//!
//! A sender byte picks the port (bits 0-2) and the credentials (bits 3-4: uid 0, 1000, 1001, or none). An id byte
//! below 0x80 picks one of `IDS`; from 0x80 to 0xbf it is a small id (idx = low 4 bits, val = the next byte); from
//! 0xc0 an id of uid 1000's or 1001's own idx (bit 0), val the next byte.
#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cnlink::wire::{CbId, CnMsgHdr, NlMsg, CN_MSG_HDRLEN, NLMSG_DONE, NLMSG_HDRLEN};
use cnlink::Credentials;
use cnlink_bus::core::{first_cn_msg, Action, BusCounters, Config, Core, Limits, Owner, Sender, Usage, UNKNOWN_UID};
use cnlink_bus::policy::{user_idx, Policy, Rule};
use cnlink_bus::wire::{self as bw, BusOp, CtlMsg, ListPage, NotifyRange, Reply, Request};
use libfuzzer_sys::fuzz_target;

const PORTS: [u32; 8] = [1, 2, 3, 4, 5, 6, 0x636E_6C6C, u32::MAX];
const UIDS: [Option<u32>; 4] = [Some(0), Some(1000), Some(1001), None];
const ALL_UIDS: [u32; 4] = [0, 1000, 1001, UNKNOWN_UID];
const LOCAL: [CbId; 2] = [CbId::new(14, 0x456), CbId::new(1, 1)];
const IDS: [CbId; 8] = [
    CbId::CONNECTOR,
    CbId::new(14, 0x456),
    CbId::new(3, 1),
    CbId::new(0, 0),
    CbId::new(0x123, 0x456),
    CbId::new(1, 1),
    CbId::new(u32::MAX, 0),
    CbId::new(7, 7),
];
const GROUPS: [u32; 7] = [0, 1, 3, 14, 0x123, u32::MAX, 7];
const REPEAT: [usize; 8] = [1, 1, 1, 1, 2, 8, 70, 300];

/// Reads the input front to back; past its end every read is 0.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        a
    }
    fn sender(&mut self) -> Sender {
        let b = self.u8();
        let port = PORTS[(b & 7) as usize];
        let creds = UIDS[((b >> 3) & 3) as usize].map(|uid| Credentials { pid: (port >> 1) as i32, uid, gid: uid });
        Sender { port, creds }
    }
    fn id(&mut self) -> CbId {
        let b = self.u8();
        match b {
            0..0x80 => IDS[(b & 7) as usize],
            0x80..0xc0 => CbId::new((b & 0xf) as u32, self.u8() as u32),
            _ => CbId::new(user_idx(1000 + (b & 1) as u32).unwrap_or(0), self.u8() as u32),
        }
    }
    fn group(&mut self) -> u32 {
        let b = self.u8();
        GROUPS.get(b as usize % 8).copied().unwrap_or(b as u32)
    }
    fn port(&mut self) -> u32 {
        PORTS[(self.u8() & 7) as usize]
    }
}

fn config(b: u8) -> Config {
    let mut policy = if b & 16 != 0 { Policy::default() } else { Policy::open() };
    if b & 1 != 0 {
        policy.limits = Limits {
            ids_per_user: 2,
            subscriptions_per_user: 2,
            notify_per_user: 2,
            ranges_per_request: 3,
            routes_per_user: 2,
            clients_per_user: 2,
        };
    }
    if b & 2 != 0 {
        policy.register = vec![Rule { uids: Some(vec![1000]), idx: Some([0, 15]), val: None }];
        policy.user_idx = b & 16 != 0;
        policy.send = vec![Rule { uids: Some(vec![1000, 1001]), idx: None, val: Some([0, 0x456]) }];
    }
    let route_timeout = (b & 4 != 0).then(|| Duration::from_secs(1));
    Config { policy, route_timeout }
}

/// Whether a remote agent answers a request with this seq (when agents answer at all).
fn answered(seq: u32) -> bool {
    !seq.is_multiple_of(4)
}

fn datagram(id: CbId, seq: u32, ack: u32, data: &[u8], pid: u32) -> Vec<u8> {
    cnlink::wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, pid).unwrap()
}

fn bus_op(inp: &mut Bytes) -> Vec<u8> {
    let code = inp.u8();
    match code % 10 {
        1 => {
            let id = inp.id();
            let n = inp.u8() as usize % 40;
            BusOp::Register { id, name: String::from_utf8_lossy(inp.take(n)).into_owned() }.to_bytes()
        }
        2 => BusOp::Unregister { id: inp.id() }.to_bytes(),
        3 => BusOp::Join { group: inp.group() }.to_bytes(),
        4 => BusOp::Leave { group: inp.group() }.to_bytes(),
        5 => {
            let (group, id, seq, ack) = (inp.group(), inp.id(), inp.u8() as u32, inp.u8() as u32);
            let n = inp.u8() as usize;
            bw::send_op(group, CnMsgHdr { id, seq, ack, ..Default::default() }, inp.take(n)).unwrap()
        }
        6 => BusOp::List { start: inp.u8() as u32 }.to_bytes(),
        7 => BusOp::Stats.to_bytes(),
        8 => {
            let (group, id, seq, ack) = (inp.group(), inp.id(), inp.u8() as u32, inp.u8() as u32);
            let n = inp.u8() as usize;
            bw::publish_op(group, CnMsgHdr { id, seq, ack, ..Default::default() }, inp.take(n)).unwrap()
        }
        _ => {
            // Any op number (known or not) with any body.
            let mut v = bw::op_header(code as u16 | (inp.u8() as u16) << 8);
            let n = inp.u8() as usize;
            v.extend_from_slice(inp.take(n));
            v
        }
    }
}

fn ctl_msg(inp: &mut Bytes) -> Vec<u8> {
    let group = inp.group();
    let (ni, nv) = (inp.u8() as usize % 5, inp.u8() as usize % 5);
    let mut range = || {
        let b = inp.u8();
        let first = [0, 1, 3, 14, 0x123, 0x456, u32::MAX - 1, b as u32][(b & 7) as usize];
        NotifyRange { first, range: inp.u8() as u32 }
    };
    let idx = (0..ni).map(|_| range()).collect();
    let val = (0..nv).map(|_| range()).collect();
    CtlMsg { group, idx, val }.to_bytes()
}

/// The pure decoders on any bytes: they never panic, and what they accept encodes back.
fn decoders(data: &[u8]) {
    if let Ok(m) = CtlMsg::parse(data) {
        assert_eq!(m.to_bytes(), data, "cn_ctl_msg does not re-encode to its bytes");
    }
    match Request::parse(data) {
        Ok(Request::Op(BusOp::Register { id, name })) => {
            assert!(!name.contains('\0') && (data.len() == 16 || data.len() == 48));
            let again = BusOp::Register { id, name: name.clone() }.to_bytes();
            assert!(matches!(Request::parse(&again), Ok(Request::Op(BusOp::Register { id: i, .. })) if i == id));
        }
        Ok(Request::Op(op)) => assert_eq!(Request::parse(&op.to_bytes()), Ok(Request::Op(op))),
        Ok(Request::Notify(m)) => assert_eq!(m.to_bytes(), data),
        Err(_) => {}
    }
    if let Ok(r) = Reply::parse(data) {
        // The reserved field is not checked on decoding; it is written as 0.
        let mut want = data.to_vec();
        want[6..8].fill(0);
        assert_eq!(r.to_bytes(), want, "reply does not re-encode to its bytes");
    }
    if let Ok(p) = ListPage::parse(data) {
        let again = ListPage::parse(&p.to_bytes()).expect("an encoded list page decodes");
        assert_eq!((again.total, again.entries.len()), (p.total, p.entries.len()));
        assert!(again
            .entries
            .iter()
            .zip(&p.entries)
            .all(|(a, b)| (a.id, a.group, a.port, a.uid) == (b.id, b.group, b.port, b.uid)));
    }
    if let Ok(v) = bw::parse_stats(data) {
        assert_eq!(bw::stats_bytes(&v), data, "stats do not re-encode to their bytes");
    }
}

/// One datagram the core wants sent, decoded.
struct Out {
    ports: Vec<u32>,
    hdr: CnMsgHdr,
    data: Vec<u8>,
}

struct Harness {
    core: Core,
    limits: Limits,
    now: Instant,
    watched: HashSet<u32>,
    /// Remote agents answer what is forwarded to them.
    agents: bool,
    /// Their answers, to be handled next.
    answers: Vec<(Sender, Vec<u8>)>,
}

impl Harness {
    /// Everything queued for sending, each checked to be a well-formed connector datagram.
    fn transmits(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            assert!(!t.ports.is_empty() && !t.ports.contains(&0), "ports {:?}", t.ports);
            assert_eq!(t.ports.iter().collect::<HashSet<_>>().len(), t.ports.len(), "a port twice: {:?}", t.ports);
            let nl = NlMsg::new_checked(&t.datagram[..]).expect("transmitted datagram has a bad nlmsghdr");
            let len = nl.nlmsg_len() as usize;
            assert_eq!(t.datagram.len(), (len + 3) & !3, "datagram is not nlmsg_len padded to 4");
            assert_eq!(nl.nlmsg_type(), NLMSG_DONE);
            let (hdr, data) = first_cn_msg(&t.datagram).expect("transmitted datagram has no valid cn_msg");
            assert_eq!(NLMSG_HDRLEN + CN_MSG_HDRLEN + hdr.len as usize, len, "trailing bytes after the cn_msg");
            assert_eq!(nl.nlmsg_seq(), hdr.seq);
            decoders(data);
            // A request forwarded to a remote owner carries the requester's port as nlmsg_pid.
            let owner = self.core.entry(hdr.id).map(|e| (e.owner, e.uid));
            if let (true, Some((Owner::Remote(p), uid)), 0) = (nl.nlmsg_pid() != 0, owner, t.ports.len() - 1) {
                assert_eq!(t.ports, [p], "forwarded to a port that does not own the id");
                if self.agents && answered(hdr.seq) {
                    let creds = (uid != UNKNOWN_UID).then_some(Credentials { pid: (p >> 1) as i32, uid, gid: uid });
                    let reply = datagram(hdr.id, hdr.seq, hdr.ack.wrapping_add(1), data, p);
                    self.answers.push((Sender { port: p, creds }, reply));
                }
            }
            out.push(Out { ports: t.ports, hdr, data: data.to_vec() });
        }
        out
    }

    /// Acts on the core's actions as the daemon would; local callbacks echo, like `cnlink bus --echo`.
    fn events(&mut self) {
        while let Some(ev) = self.core.poll_action() {
            match ev {
                Action::Deliver(d) => {
                    assert_eq!(self.core.entry(d.hdr.id).map(|e| e.owner), Some(Owner::Local));
                    let hdr = CnMsgHdr { ack: d.hdr.ack.wrapping_add(1), len: 0, flags: 0, ..d.hdr };
                    let _ = self.core.send(hdr, &d.data, d.from.port, 0);
                }
                Action::Watch { port, .. } => assert!(self.watched.insert(port), "port {port} watched twice"),
                Action::Unwatch { port } => {
                    self.watched.remove(&port);
                }
                Action::Denied(d) => assert_ne!(d.errno(), 0),
                _ => {}
            }
        }
    }

    /// Events, then what they made the core send.
    fn settle(&mut self) {
        self.events();
        self.transmits();
    }

    /// Handles a datagram and checks the answer to a control request (exactly one reply to the sender, same
    /// seq, ack + 1, an errno the protocol documents for that op, and a body that decodes; none for PUBLISH), and
    /// what became of a data message.
    fn handle(&mut self, from: Sender, datagram: &[u8]) {
        let before = self.core.stats();
        // A message from the owner of its id (under the uid that registered it, so that it stays the owner).
        let from_owner = first_cn_msg(datagram).is_some_and(|(h, _)| {
            h.id != CbId::CONNECTOR
                && self.core.entry(h.id).is_some_and(|e| e.owner == Owner::Remote(from.port) && e.uid == from.uid())
        });
        self.core.handle(self.now, from, datagram);
        let out = self.transmits();
        let Some((hdr, data)) = first_cn_msg(datagram) else {
            assert!(out.is_empty(), "a malformed datagram made the core send");
            assert_eq!(self.core.stats().malformed, before.malformed + 1);
            return self.settle();
        };
        decoders(data);
        let replies: Vec<&Out> = out
            .iter()
            .filter(|o| o.hdr.id == CbId::CONNECTOR && o.ports == [from.port])
            .filter(|o| o.hdr.seq == hdr.seq && o.hdr.ack == hdr.ack.wrapping_add(1))
            .collect();
        if hdr.id == CbId::CONNECTOR {
            let request = Request::parse(data);
            let to_sender = out.iter().filter(|o| o.ports.contains(&from.port)).count();
            if let Ok(Request::Op(BusOp::Publish { .. })) | Err((bw::BUS_OP_PUBLISH, _)) = request {
                assert_eq!(to_sender, 0, "PUBLISH answered or delivered to its own sender");
            } else {
                assert_eq!(replies.len(), 1, "a control request gets exactly one reply");
                self.check_reply(data, replies[0]);
                if let Ok(Request::Op(BusOp::Send { .. })) = request {
                    assert_eq!(to_sender, 1, "SEND delivered to its own sender");
                }
            }
        } else if from_owner {
            // The reply to one waiting request, to its requester alone; anything else dropped and counted.
            let s = self.core.stats();
            assert_eq!(s.fanout, before.fanout, "an owner's message went to a group");
            let routed = (s.replies_routed - before.replies_routed, s.replies_unrouted - before.replies_unrouted);
            match &out[..] {
                [] => assert_eq!(routed, (0, 1)),
                [o] => {
                    assert_eq!(o.ports.len(), 1, "an owner's message went to {:?}", o.ports);
                    assert_eq!(routed, (1, 0));
                }
                _ => panic!("an owner's message made {} datagrams", out.len()),
            }
        } else if let [r] = replies[..] {
            // A refused message to an id, with the id as body: EPERM (policy) or EBUSY (another socket waits for
            // the same reply); never a limit, since routes make room for newer ones.
            let r = Reply::parse(&r.data).expect("refusal does not decode");
            assert_eq!(r.op, bw::BUS_OP_MESSAGE);
            assert!([libc::EPERM, libc::EBUSY].contains(&(r.errno as i32)), "errno {}", r.errno);
            assert_eq!(r.body, [hdr.id.idx.to_ne_bytes(), hdr.id.val.to_ne_bytes()].concat());
            assert!(!out.iter().any(|o| o.hdr == hdr && o.data == data), "refused and forwarded");
        }
        self.settle();
        // The agents' answers, routed back to the requesters while their routes last.
        while let Some((from, reply)) = self.answers.pop() {
            self.handle(from, &reply);
        }
    }

    fn check_reply(&self, data: &[u8], out: &Out) {
        let r = Reply::parse(&out.data).expect("reply does not decode");
        let e = r.errno as i32;
        let allowed: &[i32] = match Request::parse(data) {
            Err((op, err)) => {
                assert_eq!(r.op, op);
                let want = if matches!(err, bw::CtlError::UnknownOp(_)) { libc::EOPNOTSUPP } else { libc::EINVAL };
                assert_eq!(e, want);
                return;
            }
            Ok(Request::Notify(_)) => {
                assert_eq!(r.op, 0);
                &[0, libc::E2BIG, libc::ENOENT, libc::EDQUOT]
            }
            Ok(Request::Op(op)) => {
                assert_eq!(r.op, op.code());
                match op {
                    BusOp::Register { .. } => &[0, libc::EINVAL, libc::EPERM, libc::EDQUOT],
                    BusOp::Unregister { .. } => &[0, libc::ENOENT, libc::EPERM],
                    BusOp::Join { .. } => &[0, libc::EINVAL, libc::EDQUOT],
                    BusOp::Leave { .. } => &[0, libc::ENOENT],
                    BusOp::Send { .. } => &[0, libc::EPERM, libc::ENODEV, libc::ESRCH],
                    BusOp::Publish { .. } => unreachable!("PUBLISH is never answered"),
                    BusOp::List { start } => return self.check_list(start, &r),
                    BusOp::Stats => {
                        assert_eq!(e, 0);
                        let v = bw::parse_stats(r.body).expect("STATS body does not decode");
                        assert_eq!(v.len(), BusCounters::NAMES.len());
                        return;
                    }
                    _ => unreachable!("an op the bus does not know decoded"),
                }
            }
        };
        assert!(allowed.contains(&e), "errno {e} for {:?}", Request::parse(data));
        assert!(r.body.is_empty());
    }

    fn check_list(&self, start: u32, r: &Reply) {
        assert_eq!(r.errno, 0);
        let page = ListPage::parse(r.body).expect("LIST body does not decode");
        let all = self.core.entries();
        assert_eq!(page.total as usize, all.len());
        assert!(page.entries.len() <= bw::LIST_PAGE);
        let want = all.iter().skip(start as usize).take(bw::LIST_PAGE);
        assert_eq!(page.entries.len(), want.len());
        for (got, e) in page.entries.iter().zip(want) {
            let port = if let Owner::Remote(p) = e.owner { p } else { 0 };
            assert_eq!((got.id, got.group, got.port, got.uid, &got.name), (e.id, e.id.idx, port, e.uid, &e.name));
        }
    }

    /// Usage within the limits, adding up to the gauges; a timer armed while routes wait.
    fn check_usage(&self) {
        let s = self.core.stats();
        let l = &self.limits;
        let entries = self.core.entries();
        let mut sum = Usage::default();
        let mut users = 0;
        for uid in ALL_UIDS {
            let u = self.core.usage(uid);
            assert!(u.ids <= l.ids_per_user && u.subscriptions <= l.subscriptions_per_user, "uid {uid}: {u:?}");
            assert!(u.notify <= l.notify_per_user && u.routes <= l.routes_per_user, "uid {uid}: {u:?}");
            assert!(u.clients <= l.clients_per_user, "uid {uid}: {u:?}");
            let ids = entries.iter().filter(|e| matches!(e.owner, Owner::Remote(_)) && e.uid == uid).count();
            assert_eq!(u.ids, ids, "uid {uid}: ids counted {} held {ids}", u.ids);
            sum.subscriptions += u.subscriptions;
            sum.notify += u.notify;
            sum.routes += u.routes;
            sum.clients += u.clients;
            users += (u != Usage::default()) as u64;
        }
        assert_eq!(sum.subscriptions as u64, s.subscriptions, "subscriptions counted vs held");
        assert_eq!(sum.notify as u64, s.notify_requests, "notification requests counted vs held");
        assert_eq!(sum.routes as u64, s.routes, "routes counted vs held");
        assert_eq!(sum.clients as u64, s.clients, "clients counted vs held");
        assert_eq!(users, s.users);
        assert_eq!(s.ids as usize, entries.len());
        if s.routes > 0 {
            assert!(self.core.poll_timeout().is_some(), "{} routes wait and no timeout is armed", s.routes);
        }
    }

    fn record(&mut self, inp: &mut Bytes) {
        let k = inp.u8();
        let repeat = REPEAT[(k >> 5) as usize];
        match k & 7 {
            0 => {
                let (from, id, seq, ack) = (inp.sender(), inp.id(), inp.u8() as u32, inp.u8() as u32);
                let n = inp.u8() as usize;
                let data = inp.take(n);
                let step = (k >> 3) as u32 & 1;
                for i in 0..repeat as u32 {
                    self.handle(from, &datagram(id, seq + i * step, ack, data, from.port));
                }
            }
            1 | 2 => {
                let from = inp.sender();
                let data = if k & 7 == 1 { bus_op(inp) } else { ctl_msg(inp) };
                let d = datagram(CbId::CONNECTOR, inp.u8() as u32, inp.u8() as u32, &data, from.port);
                (0..repeat).for_each(|_| self.handle(from, &d));
            }
            3 => {
                let from = inp.sender();
                let n = inp.u16() as usize;
                let d = inp.take(n);
                (0..repeat).for_each(|_| self.handle(from, d));
            }
            4 => {
                self.now += Duration::from_millis(100) * inp.u8() as u32;
                self.core.handle_timeout(self.now);
            }
            5 => {
                let port = inp.port();
                self.core.client_gone(port);
            }
            6 => {
                let port = inp.port();
                let errno = [libc::ECONNREFUSED, libc::EAGAIN, libc::ENOBUFS, 0][inp.u8() as usize % 4];
                self.core.send_failed(port, errno);
            }
            _ => match inp.u8() % 3 {
                0 => {
                    let _ = self.core.add_callback(inp.id(), "local");
                }
                1 => {
                    let id = inp.id();
                    let local = self.core.entry(id).map(|e| e.owner) == Some(Owner::Local);
                    assert_eq!(self.core.del_callback(id), local);
                }
                _ => {
                    let (id, portid, group) = (inp.id(), inp.port(), inp.group());
                    let portid = if inp.u8() & 1 == 0 { 0 } else { portid };
                    let n = inp.u8() as usize;
                    let _ = self.core.send(CnMsgHdr { id, ..Default::default() }, inp.take(n), portid, group);
                }
            },
        }
        self.transmits();
        self.settle();
        self.check_usage();
    }

    /// After the route timeout no route is left; after every client is gone nothing is held.
    fn finish(&mut self) {
        self.now += Duration::from_secs(3600);
        self.core.handle_timeout(self.now);
        assert_eq!(self.core.stats().routes, 0, "routes outlived their timeout");
        for port in PORTS {
            self.core.client_gone(port);
            self.transmits();
            self.settle();
        }
        self.check_usage();
        let s = self.core.stats();
        assert_eq!((s.clients, s.subscriptions, s.notify_requests, s.users), (0, 0, 0, 0), "{s:?}");
        assert!(self.core.entries().iter().all(|e| !matches!(e.owner, Owner::Remote(_))));
        assert!(self.watched.is_empty(), "ports still watched: {:?}", self.watched);
    }
}

fuzz_target!(|data: &[u8]| {
    decoders(data);
    let mut inp = Bytes(data);
    let config = config(inp.u8());
    let agents = data.first().is_some_and(|b| b & 8 != 0);
    let mut h = Harness {
        limits: config.policy.limits,
        core: Core::new(config),
        now: Instant::now(),
        watched: HashSet::new(),
        agents,
        answers: Vec::new(),
    };
    for id in LOCAL {
        h.core.add_callback(id, "cn_test").unwrap();
    }
    h.events();
    while !inp.0.is_empty() {
        h.record(&mut inp);
    }
    h.finish();
});
