//! Property tests for the wire layer (`cnlink::wire`).
//!
//! For every structure: emit then parse gives back the same value; parsing arbitrary bytes never panics; a view
//! never reads past its buffer (every prefix of a valid message decodes to consistent lengths or to a typed
//! error). Multi-message datagrams (several `cn_msg`s in one netlink payload, several netlink messages in one
//! datagram) decode fully. `EventMask::admits` is checked against a model written from spec §5.4/§5.5, and
//! `ExitStatus` against libc's `W*` macros.

use cnlink::wire::netlink::{nlmsg_align, NLMSG_ALIGNTO, NLMSG_HDRLEN};
use cnlink::wire::proc_event::{EVENT_DATA_LEN, PROC_EVENT_HDRLEN, PROC_EVENT_LEN, UNKNOWN_DATA_MAX};
use cnlink::wire::proc_input::{
    PROC_EVENT_ALL, PROC_EVENT_COMM, PROC_EVENT_COREDUMP, PROC_EVENT_EXEC, PROC_EVENT_EXIT, PROC_EVENT_FORK,
    PROC_EVENT_GID, PROC_EVENT_NONE, PROC_EVENT_NONZERO_EXIT, PROC_EVENT_PTRACE, PROC_EVENT_SID, PROC_EVENT_UID,
};
use cnlink::wire::{
    datagram, emit_datagram, CbId, CnMsg, CnMsgHdr, CnMsgs, EventData, EventMask, ExitStatus, McastOp, NlKind,
    NlMessages, NlMsg, NlMsgHdr, Pretty, ProcEvent, ProcInput, WireError, CN_MSG_HDRLEN, NLMSG_DONE, NLMSG_ERROR,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------------------------
// Fixtures (spec §2.4, captured on Linux 6.18 x86_64; the same bytes as the wire module's unit tests).

/// The legacy proc LISTEN request.
const LISTEN: [u8; 40] = [
    0x28, 0, 0, 0, 3, 0, 0, 0, // nlmsg_len 40, NLMSG_DONE, flags 0
    0, 0, 0, 0, 0, 0, 0, 0, // nlmsg_seq 0, nlmsg_pid 0
    1, 0, 0, 0, 1, 0, 0, 0, // id {CN_IDX_PROC, CN_VAL_PROC}
    0, 0, 0, 0, 0, 0, 0, 0, // seq 0, ack 0
    4, 0, 0, 0, // len 4, flags 0
    1, 0, 0, 0, // PROC_CN_MCAST_LISTEN
];

/// The ack the kernel sent for a request with seq=0x11223344, ack=0x55667788.
const ACK: [u8; 76] = [
    0x4c, 0, 0, 0, 3, 0, 0, 0, // nlmsg_len 76, NLMSG_DONE, flags 0
    0x86, 0x2a, 0x15, 0, 0, 0, 0, 0, // nlmsg_seq = per-CPU counter, nlmsg_pid 0
    1, 0, 0, 0, 1, 0, 0, 0, // id {1, 1}
    0x86, 0x2a, 0x15, 0, // seq = the same counter
    0x89, 0x77, 0x66, 0x55, // ack = request ack + 1
    0x28, 0, 0, 0, // len 40, flags 0
    0, 0, 0, 0, // what = PROC_EVENT_NONE
    1, 0, 0, 0, // cpu 1
    0xa2, 0xa3, 0x78, 0xcf, 0x73, 0x01, 0, 0, // timestamp_ns (unaligned at offset 44)
    0, 0, 0, 0, // err 0
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // rest of the union
];

/// Every `what` this crate decodes to a named kind.
const KNOWN_WHATS: [u32; 10] = [
    PROC_EVENT_NONE,
    PROC_EVENT_FORK,
    PROC_EVENT_EXEC,
    PROC_EVENT_UID,
    PROC_EVENT_GID,
    PROC_EVENT_SID,
    PROC_EVENT_PTRACE,
    PROC_EVENT_COMM,
    PROC_EVENT_COREDUMP,
    PROC_EVENT_EXIT,
];

/// The filter bits of `enum proc_cn_event` (spec §5.1).
const FILTER_BITS: [u32; 10] = [
    PROC_EVENT_FORK,
    PROC_EVENT_EXEC,
    PROC_EVENT_UID,
    PROC_EVENT_GID,
    PROC_EVENT_SID,
    PROC_EVENT_PTRACE,
    PROC_EVENT_COMM,
    PROC_EVENT_NONZERO_EXIT,
    PROC_EVENT_COREDUMP,
    PROC_EVENT_EXIT,
];

// ---------------------------------------------------------------------------------------------------------------
// Strategies.

fn arb_nl_hdr() -> impl Strategy<Value = NlMsgHdr> {
    (any::<u32>(), any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>())
        .prop_map(|(len, ty, flags, seq, pid)| NlMsgHdr { len, ty, flags, seq, pid })
}

fn arb_cb_id() -> impl Strategy<Value = CbId> {
    prop_oneof![
        Just(CbId::PROC),
        Just(CbId::CONNECTOR),
        (0u32..16, 0u32..4).prop_map(|(i, v)| CbId::new(i, v)),
        (any::<u32>(), any::<u32>()).prop_map(|(i, v)| CbId::new(i, v)),
    ]
}

fn arb_cn_hdr() -> impl Strategy<Value = CnMsgHdr> {
    (arb_cb_id(), any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>())
        .prop_map(|(id, seq, ack, len, flags)| CnMsgHdr { id, seq, ack, len, flags })
}

/// A `cn_msg` header and its data; `len` is set from the data.
fn arb_cn_msg() -> impl Strategy<Value = (CnMsgHdr, Vec<u8>)> {
    (arb_cn_hdr(), prop::collection::vec(any::<u8>(), 0..80)).prop_map(|(mut h, d)| {
        h.len = d.len() as u16;
        (h, d)
    })
}

/// `ev` as [`ProcEvent::emit`] writes it: an unknown kind carries the union it kept, at least today's 24 bytes.
fn as_emitted(ev: ProcEvent) -> ProcEvent {
    match ev.data {
        EventData::Unknown { what, data, .. } => {
            ProcEvent { data: EventData::Unknown { what, len: (ev.wire_len() - PROC_EVENT_HDRLEN) as u16, data }, ..ev }
        }
        _ => ev,
    }
}

/// A `what` that is not one of the named kinds (new kernels add kinds; `NONZERO_EXIT` is never sent).
fn arb_unknown_what() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(PROC_EVENT_NONZERO_EXIT),
        Just(0x400),
        Just(0x8),
        Just(PROC_EVENT_ALL),
        any::<u32>().prop_filter("a named kind", |w| !KNOWN_WHATS.contains(w)),
    ]
}

fn arb_event_data() -> impl Strategy<Value = EventData> {
    let p = any::<i32>;
    prop_oneof![
        any::<u32>().prop_map(|err| EventData::Ack { err }),
        (p(), p(), p(), p()).prop_map(|(a, b, c, d)| EventData::Fork {
            parent_pid: a,
            parent_tgid: b,
            child_pid: c,
            child_tgid: d
        }),
        (p(), p()).prop_map(|(a, b)| EventData::Exec { process_pid: a, process_tgid: b }),
        (p(), p(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c, d)| EventData::Uid {
            process_pid: a,
            process_tgid: b,
            ruid: c,
            euid: d
        }),
        (p(), p(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c, d)| EventData::Gid {
            process_pid: a,
            process_tgid: b,
            rgid: c,
            egid: d
        }),
        (p(), p()).prop_map(|(a, b)| EventData::Sid { process_pid: a, process_tgid: b }),
        (p(), p(), p(), p()).prop_map(|(a, b, c, d)| EventData::Ptrace {
            process_pid: a,
            process_tgid: b,
            tracer_pid: c,
            tracer_tgid: d
        }),
        (p(), p(), any::<[u8; 16]>()).prop_map(|(a, b, comm)| EventData::Comm {
            process_pid: a,
            process_tgid: b,
            comm
        }),
        (p(), p(), p(), p()).prop_map(|(a, b, c, d)| EventData::Coredump {
            process_pid: a,
            process_tgid: b,
            parent_pid: c,
            parent_tgid: d
        }),
        (p(), p(), any::<u32>(), any::<u32>(), p(), p()).prop_map(|(a, b, c, d, e, f)| EventData::Exit {
            process_pid: a,
            process_tgid: b,
            exit_code: c,
            exit_signal: d,
            parent_pid: e,
            parent_tgid: f
        }),
        // As today's 40-byte structure carries it: 24 bytes of union (longer ones: `unknown_kinds_keep_...` below).
        (arb_unknown_what(), any::<[u8; EVENT_DATA_LEN]>()).prop_map(|(what, bytes)| {
            let mut data = [0u8; UNKNOWN_DATA_MAX];
            data[..EVENT_DATA_LEN].copy_from_slice(&bytes);
            EventData::Unknown { what, len: EVENT_DATA_LEN as u16, data }
        }),
    ]
}

fn arb_proc_event() -> impl Strategy<Value = ProcEvent> {
    (any::<u32>(), any::<u64>(), arb_event_data()).prop_map(|(cpu, timestamp_ns, data)| ProcEvent {
        cpu,
        timestamp_ns,
        data,
    })
}

/// Any op, as `McastOp::from_raw` would produce it (so `Unknown(1)` never appears).
fn arb_mcast_op() -> impl Strategy<Value = McastOp> {
    prop_oneof![Just(1u32), Just(2u32), any::<u32>()].prop_map(McastOp::from_raw)
}

fn arb_proc_input() -> impl Strategy<Value = ProcInput> {
    prop_oneof![
        arb_mcast_op().prop_map(ProcInput::Legacy),
        (arb_mcast_op(), arb_mask()).prop_map(|(op, events)| ProcInput::Filtered { op, events }),
    ]
}

/// A mask: a subset of the known filter bits, sometimes with unknown bits, or any value.
fn arb_mask() -> impl Strategy<Value = EventMask> {
    prop_oneof![
        Just(EventMask::ALL),
        Just(EventMask::NONE),
        (0u32..1024).prop_map(subset),
        (0u32..1024, any::<u32>()).prop_map(|(s, junk)| EventMask(subset(s).0 | (junk & !PROC_EVENT_ALL))),
        any::<u32>().prop_map(EventMask),
    ]
}

/// The subset of [`FILTER_BITS`] selected by the low ten bits of `sel`.
fn subset(sel: u32) -> EventMask {
    EventMask(FILTER_BITS.iter().enumerate().filter(|(i, _)| sel & (1 << i) != 0).fold(0, |m, (_, b)| m | b))
}

fn arb_what() -> impl Strategy<Value = u32> {
    prop_oneof![prop::sample::select(KNOWN_WHATS.to_vec()), Just(PROC_EVENT_NONZERO_EXIT), any::<u32>(),]
}

/// A proc connector datagram as the kernel frames it, with an event inside.
fn arb_proc_datagram() -> impl Strategy<Value = Vec<u8>> {
    (arb_proc_event(), any::<u32>(), any::<u32>()).prop_map(|(ev, seq, ack)| {
        let mut d = [0u8; PROC_EVENT_LEN];
        ev.emit(&mut d).unwrap();
        datagram(CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() }, &d, 0).unwrap()
    })
}

/// Any valid datagram (captured ones, framed events, framed arbitrary messages), then a few bytes overwritten.
fn arb_mutated_datagram() -> impl Strategy<Value = Vec<u8>> {
    let base = prop_oneof![
        Just(LISTEN.to_vec()),
        Just(ACK.to_vec()),
        arb_proc_datagram(),
        arb_cn_msg().prop_map(|(h, d)| datagram(h, &d, 0).unwrap()),
    ];
    (base, prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)).prop_map(|(mut d, edits)| {
        for (at, b) in edits {
            let i = at.index(d.len());
            d[i] = b;
        }
        d
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers.

/// Serialises one netlink message with header `h` (its `len` forced to the exact length) and `payload`, padded.
fn nl_message(mut h: NlMsgHdr, payload: &[u8]) -> Vec<u8> {
    h.len = (NLMSG_HDRLEN + payload.len()) as u32;
    let mut v = vec![0u8; nlmsg_align(NLMSG_HDRLEN + payload.len())];
    h.emit(&mut v).unwrap();
    v[NLMSG_HDRLEN..NLMSG_HDRLEN + payload.len()].copy_from_slice(payload);
    v
}

/// Serialises one `cn_msg` (header with `len` already set, then data), unpadded.
fn cn_bytes(h: &CnMsgHdr, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; CN_MSG_HDRLEN];
    h.emit(&mut v).unwrap();
    v.extend_from_slice(data);
    v
}

/// The kernel's filter, written from the spec rather than from the crate: §5.4 stores `event_type & ALL` and
/// turns 0 into ALL; §5.5 (`cn_filter`) then delivers when the stored set is exactly ALL, when it has
/// NONZERO_EXIT and the event is an exit with a non-zero code, or when it shares a bit with `what`.
fn kernel_delivers(requested: u32, what: u32, exit_code: u32) -> bool {
    let stored = match requested & PROC_EVENT_ALL {
        0 => PROC_EVENT_ALL,
        m => m,
    };
    let all = stored == PROC_EVENT_ALL;
    let nonzero_exit = stored & PROC_EVENT_NONZERO_EXIT != 0 && what == PROC_EVENT_EXIT && exit_code != 0;
    let shared_bit = stored & what != 0;
    all || nonzero_exit || shared_bit
}

/// Walks every structure of `bytes` the way a receiver would, touching every accessor, and checks that each
/// view stays inside the bytes it was given. Returns the number of netlink messages decoded.
fn walk_everything(bytes: &[u8]) -> usize {
    let mut ok = 0;
    let mut consumed = 0usize;
    for m in NlMessages::new(bytes) {
        let Ok(m) = m else { break };
        ok += 1;
        let h = m.header();
        assert!(h.len as usize >= NLMSG_HDRLEN);
        assert!(consumed + h.len as usize <= bytes.len(), "message runs past the datagram");
        assert_eq!(m.payload().len(), h.len as usize - NLMSG_HDRLEN);
        consumed += nlmsg_align(h.len as usize);
        if let NlKind::Error(Some(_)) = m.kind() {
            assert!(m.payload().len() >= 4);
        }
        let mut used = 0;
        for cn in CnMsgs::new(m.payload()) {
            let Ok(cn) = cn else { break };
            assert_eq!(cn.data().len(), cn.len() as usize);
            assert_eq!(cn.as_bytes().len(), CN_MSG_HDRLEN + cn.len() as usize);
            assert_eq!(cn.header().len, cn.len());
            used += cn.as_bytes().len();
            assert!(used <= m.payload().len(), "cn_msg runs past its netlink payload");
            if let Ok(ev) = ProcEvent::parse(cn.data()) {
                let _ = ev.data.subject();
                let _ = ev.data.exit_status();
                let _ = ev.to_string();
            }
            let _ = ProcInput::parse(cn.data());
        }
    }
    ok
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips: emit then parse gives back the same value.

proptest! {
    #[test]
    fn nl_hdr_round_trip(h in arb_nl_hdr(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        h.emit(&mut b).unwrap();
        prop_assert_eq!(NlMsgHdr::parse(&b).unwrap(), h);
        b.extend(tail);
        prop_assert_eq!(NlMsgHdr::parse(&b).unwrap(), h, "bytes after the header are not read");
    }

    #[test]
    fn nl_hdr_bytes_round_trip(b in any::<[u8; NLMSG_HDRLEN]>()) {
        let mut out = [0u8; NLMSG_HDRLEN];
        NlMsgHdr::parse(&b).unwrap().emit(&mut out).unwrap();
        prop_assert_eq!(out, b);
    }

    #[test]
    fn nl_hdr_short_buffers_are_typed_errors(h in arb_nl_hdr(), n in 0usize..NLMSG_HDRLEN) {
        let mut b = vec![0u8; n];
        prop_assert_eq!(h.emit(&mut b), Err(WireError::Truncated { needed: NLMSG_HDRLEN, got: n }));
        prop_assert_eq!(NlMsgHdr::parse(&b), Err(WireError::Truncated { needed: NLMSG_HDRLEN, got: n }));
    }

    #[test]
    fn cn_hdr_round_trip(h in arb_cn_hdr()) {
        let mut b = [0u8; CN_MSG_HDRLEN];
        h.emit(&mut b).unwrap();
        prop_assert_eq!(CnMsgHdr::parse(&b).unwrap(), h);
        let mut short = [0u8; CN_MSG_HDRLEN - 1];
        prop_assert_eq!(h.emit(&mut short), Err(WireError::Truncated { needed: CN_MSG_HDRLEN, got: CN_MSG_HDRLEN - 1 }));
    }

    #[test]
    fn cn_hdr_bytes_round_trip(b in any::<[u8; CN_MSG_HDRLEN]>()) {
        let mut out = [0u8; CN_MSG_HDRLEN];
        CnMsgHdr::parse(&b).unwrap().emit(&mut out).unwrap();
        prop_assert_eq!(out, b);
    }

    #[test]
    fn cn_msg_view_round_trip((h, data) in arb_cn_msg(), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let mut b = cn_bytes(&h, &data);
        b.extend(tail);
        let cn = CnMsg::new_checked(&b[..]).unwrap();
        prop_assert_eq!(cn.header(), h);
        prop_assert_eq!(cn.data(), &data[..]);
        prop_assert_eq!(cn.as_bytes(), &b[..CN_MSG_HDRLEN + data.len()]);
    }

    #[test]
    fn datagram_round_trip(h in arb_cn_hdr(), data in prop::collection::vec(any::<u8>(), 0..300), pid in any::<u32>()) {
        let d = datagram(h, &data, pid).unwrap();
        let exact = NLMSG_HDRLEN + CN_MSG_HDRLEN + data.len();
        prop_assert_eq!(d.len(), nlmsg_align(exact));
        prop_assert!(d[exact..].iter().all(|&b| b == 0), "padding is zero");

        let msgs: Vec<_> = NlMessages::new(&d).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(msgs.len(), 1);
        let nl = msgs[0].header();
        prop_assert_eq!(nl, NlMsgHdr { len: exact as u32, ty: NLMSG_DONE, flags: 0, seq: h.seq, pid });
        prop_assert_eq!(msgs[0].kind(), NlKind::Data(NLMSG_DONE));

        let cns: Vec<_> = CnMsgs::new(msgs[0].payload()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(cns.len(), 1);
        prop_assert_eq!(cns[0].header(), CnMsgHdr { len: data.len() as u16, ..h });
        prop_assert_eq!(cns[0].data(), &data[..]);

        // emit_datagram into a buffer of exactly the padded size writes the same bytes, over any old contents.
        let mut buf = vec![0xa5u8; d.len()];
        prop_assert_eq!(emit_datagram(&mut buf, h, &data, pid), Ok(d.len()));
        prop_assert_eq!(&buf, &d);
        // One byte short is a typed error.
        let mut short = vec![0u8; d.len() - 1];
        prop_assert_eq!(
            emit_datagram(&mut short, h, &data, pid),
            Err(WireError::Truncated { needed: d.len(), got: d.len() - 1 })
        );
    }

    #[test]
    fn proc_event_round_trip(ev in arb_proc_event(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut b = vec![0u8; PROC_EVENT_LEN];
        prop_assert_eq!(ev.emit(&mut b), Ok(PROC_EVENT_LEN));
        prop_assert_eq!(ProcEvent::parse(&b).unwrap(), ev);
        prop_assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), ev.data.what());
        // Bytes past the structure (a longer future struct) are ignored by the kinds this crate knows; an unknown
        // kind keeps them (up to 64 bytes of union) and says how many there were.
        b.extend(tail.iter().copied());
        match (ProcEvent::parse(&b).unwrap().data, ev.data) {
            (EventData::Unknown { len, data, .. }, EventData::Unknown { data: before, .. }) => {
                prop_assert_eq!(usize::from(len), EVENT_DATA_LEN + tail.len());
                prop_assert_eq!(&data[..EVENT_DATA_LEN], &before[..EVENT_DATA_LEN]);
                prop_assert_eq!(&data[EVENT_DATA_LEN..EVENT_DATA_LEN + tail.len()], &tail[..]);
            }
            (got, _) => prop_assert_eq!(got, ev.data),
        }
        // emit clears what it does not write.
        let mut dirty = [0xffu8; PROC_EVENT_LEN];
        ev.emit(&mut dirty).unwrap();
        prop_assert_eq!(&dirty[..], &b[..PROC_EVENT_LEN]);
        let mut short = [0u8; PROC_EVENT_LEN - 1];
        prop_assert_eq!(ev.emit(&mut short), Err(WireError::Truncated { needed: PROC_EVENT_LEN, got: PROC_EVENT_LEN - 1 }));
    }

    #[test]
    fn proc_event_through_a_whole_datagram(ev in arb_proc_event(), seq in any::<u32>(), ack in any::<u32>()) {
        let mut b = [0u8; PROC_EVENT_LEN];
        ev.emit(&mut b).unwrap();
        let d = datagram(CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() }, &b, 0).unwrap();
        prop_assert_eq!(d.len(), 76);
        let nl = NlMsg::new_checked(&d[..]).unwrap();
        let cn = CnMsg::new_checked(nl.payload()).unwrap();
        // The event starts at offset 36: its u64 timestamp is read unaligned.
        prop_assert_eq!(ProcEvent::parse(cn.data()).unwrap(), ev);
        let shown = Pretty(&d).to_string();
        prop_assert!(shown.contains(ev.data.name()), "{}", shown);
    }

    #[test]
    fn proc_input_round_trip(input in arb_proc_input()) {
        let (b, n) = input.to_bytes();
        prop_assert_eq!(n, input.wire_len());
        prop_assert_eq!(ProcInput::parse(&b[..n]).unwrap(), input);
        let mut short = vec![0u8; n - 1];
        prop_assert_eq!(input.emit(&mut short), Err(WireError::Truncated { needed: n, got: n - 1 }));
        // The filtered form's first four bytes are the legacy form of the same op.
        if let ProcInput::Filtered { op, .. } = input {
            prop_assert_eq!(ProcInput::parse(&b[..4]).unwrap(), ProcInput::Legacy(op));
        }
    }

    #[test]
    fn mcast_op_raw_round_trip(v in any::<u32>()) {
        prop_assert_eq!(McastOp::from_raw(v).to_raw(), v);
    }

    #[test]
    fn cb_id_display_parse_round_trip(id in arb_cb_id()) {
        let s = id.to_string();
        prop_assert_eq!(s.parse::<CbId>().unwrap(), id);
        prop_assert_eq!(format!("{:#x}:{:#x}", id.idx, id.val).parse::<CbId>().unwrap(), id);
        prop_assert_eq!(format!("{:#X}.{}", id.idx, id.val).replace("0X", "0x").parse::<CbId>().unwrap(), id);
        if id.idx == u32::MAX {
            prop_assert_eq!(format!("-1.{}", id.val).parse::<CbId>().unwrap(), id);
        }
    }

    #[test]
    fn cb_id_parse_never_panics(s in ".{0,24}", raw in "[0-9a-fA-FxX.:+ -]{0,24}") {
        for s in [s, raw] {
            if let Ok(id) = s.parse::<CbId>() {
                // Whatever it accepted, its canonical form names the same id.
                prop_assert_eq!(id.to_string().parse::<CbId>().unwrap(), id);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-message datagrams.

proptest! {
    #[test]
    fn several_cn_msgs_in_one_netlink_message(
        msgs in prop::collection::vec(arb_cn_msg(), 1..6),
        old_padding in 0usize..4,
        nl in arb_nl_hdr(),
    ) {
        let mut payload: Vec<u8> = msgs.iter().flat_map(|(h, d)| cn_bytes(h, d)).collect();
        // Old kernels padded nlmsg_len to 4: up to three trailing bytes inside the message are padding.
        payload.resize(payload.len() + old_padding, 0);
        let d = nl_message(NlMsgHdr { ty: NLMSG_DONE, ..nl }, &payload);

        let nls: Vec<_> = NlMessages::new(&d).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(nls.len(), 1);
        prop_assert_eq!(nls[0].payload(), &payload[..]);
        let got: Vec<_> = CnMsgs::new(nls[0].payload()).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), msgs.len());
        for (cn, (h, data)) in got.iter().zip(&msgs) {
            prop_assert_eq!(cn.header(), *h);
            prop_assert_eq!(cn.data(), &data[..]);
        }
        prop_assert_eq!(Pretty(&d).to_string().matches("  cn_msg id=").count(), msgs.len());
    }

    #[test]
    fn several_netlink_messages_in_one_datagram(
        msgs in prop::collection::vec((arb_nl_hdr(), prop::collection::vec(any::<u8>(), 0..60)), 1..6),
        conn in prop::collection::vec(arb_cn_msg(), 0..4),
    ) {
        // Arbitrary netlink messages of any type, then connector datagrams framed as the kernel does.
        let mut d = Vec::new();
        let mut expect = Vec::new();
        for (h, p) in &msgs {
            d.extend(nl_message(*h, p));
            expect.push((NlMsgHdr { len: (NLMSG_HDRLEN + p.len()) as u32, ..*h }, p.clone()));
        }
        for (h, data) in &conn {
            let one = datagram(*h, data, 0).unwrap();
            let nl = NlMsgHdr::parse(&one).unwrap();
            expect.push((nl, one[NLMSG_HDRLEN..nl.len as usize].to_vec()));
            d.extend(one);
        }
        let got: Vec<_> = NlMessages::new(&d).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), expect.len());
        for (m, (h, p)) in got.iter().zip(&expect) {
            prop_assert_eq!(m.header(), *h);
            prop_assert_eq!(m.payload(), &p[..]);
        }
        // The connector messages at the end decode to what was framed.
        for (m, (h, data)) in got[msgs.len()..].iter().zip(&conn) {
            let cns: Vec<_> = CnMsgs::new(m.payload()).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(cns.len(), 1);
            prop_assert_eq!(cns[0].header(), *h);
            prop_assert_eq!(cns[0].data(), &data[..]);
        }
        prop_assert_eq!(walk_everything(&d), expect.len());
        prop_assert_eq!(Pretty(&d).to_string().matches("nlmsghdr len=").count(), expect.len());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Views never read past the buffer: every prefix of a valid message is Ok with consistent lengths or a typed error.

proptest! {
    #[test]
    fn netlink_prefixes(
        msgs in prop::collection::vec((arb_nl_hdr(), prop::collection::vec(any::<u8>(), 0..40)), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut d = Vec::new();
        let mut starts = Vec::new();
        let mut lens = Vec::new();
        for (h, p) in &msgs {
            starts.push(d.len());
            lens.push(NLMSG_HDRLEN + p.len());
            d.extend(nl_message(*h, p));
        }
        starts.push(d.len());
        let n = cut.index(d.len() + 1);
        let prefix = &d[..n];

        // A message decodes iff its unpadded bytes are all there; then the walk either ends quietly (fewer than
        // four bytes left) or yields exactly one typed error.
        let complete = (0..msgs.len()).filter(|&i| starts[i] + lens[i] <= n).count();
        let resume = starts[complete].min(n);
        let items: Vec<_> = NlMessages::new(prefix).collect();
        let oks = items.iter().take_while(|r| r.is_ok()).count();
        prop_assert_eq!(oks, complete);
        prop_assert_eq!(items.len() - oks, usize::from(n - resume >= NLMSG_ALIGNTO));
        for (i, m) in items.iter().take(oks).enumerate() {
            let m = m.as_ref().unwrap();
            prop_assert_eq!(m.nlmsg_len() as usize, lens[i]);
            prop_assert_eq!(m.payload(), &d[starts[i] + NLMSG_HDRLEN..starts[i] + lens[i]]);
        }
        if let Some(Err(e)) = items.last() {
            let left = n - resume;
            match *e {
                WireError::Truncated { needed, got } => prop_assert!(needed == NLMSG_HDRLEN && got == left && got < needed),
                WireError::BadNlmsgLen { nlmsg_len, available } => {
                    prop_assert_eq!(available, left);
                    prop_assert!(nlmsg_len as usize > available);
                }
                other => prop_assert!(false, "unexpected error {:?}", other),
            }
        }

        // The single-message view on the same prefix.
        match NlMsg::new_checked(prefix) {
            Ok(m) => {
                prop_assert!(n >= lens[0]);
                prop_assert_eq!(m.payload().len(), lens[0] - NLMSG_HDRLEN);
            }
            Err(WireError::Truncated { needed: NLMSG_HDRLEN, got }) => prop_assert!(got == n && n < NLMSG_HDRLEN),
            Err(WireError::BadNlmsgLen { nlmsg_len, available }) => {
                prop_assert!(available == n && nlmsg_len as usize == lens[0] && lens[0] > n)
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
        walk_everything(prefix);
    }

    #[test]
    fn cn_msg_prefixes(msgs in prop::collection::vec(arb_cn_msg(), 1..4), cut in any::<prop::sample::Index>()) {
        let p: Vec<u8> = msgs.iter().flat_map(|(h, d)| cn_bytes(h, d)).collect();
        let n = cut.index(p.len() + 1);
        let first = CN_MSG_HDRLEN + msgs[0].1.len();
        match CnMsg::new_checked(&p[..n]) {
            Ok(cn) => {
                prop_assert!(n >= first);
                prop_assert_eq!(cn.data(), &msgs[0].1[..]);
            }
            Err(e) if n < CN_MSG_HDRLEN => prop_assert_eq!(e, WireError::Truncated { needed: CN_MSG_HDRLEN, got: n }),
            Err(e) => {
                prop_assert!(n < first);
                prop_assert_eq!(e, WireError::BadCnLen { cn_len: msgs[0].0.len, payload: n });
            }
        }
        // The walk yields the messages that fit whole, then at most one error (unless < 4 bytes are left).
        let mut at = 0;
        let mut whole = 0;
        for (h, d) in &msgs {
            if at + CN_MSG_HDRLEN + d.len() > n {
                break;
            }
            at += CN_MSG_HDRLEN + h.len as usize;
            whole += 1;
        }
        let items: Vec<_> = CnMsgs::new(&p[..n]).collect();
        let oks = items.iter().take_while(|r| r.is_ok()).count();
        prop_assert_eq!(oks, whole);
        prop_assert_eq!(items.len() - oks, usize::from(n - at >= 4));
        for (cn, (h, d)) in items.iter().take(oks).zip(&msgs) {
            let cn = cn.as_ref().unwrap();
            prop_assert_eq!(cn.header(), *h);
            prop_assert_eq!(cn.data(), &d[..]);
        }
    }

    #[test]
    fn proc_event_prefixes(ev in arb_proc_event(), n in 0usize..=PROC_EVENT_LEN) {
        let mut b = [0u8; PROC_EVENT_LEN];
        ev.emit(&mut b).unwrap();
        let member = match ev.data {
            EventData::Ack { .. } => 4,
            EventData::Exec { .. } | EventData::Sid { .. } => 8,
            EventData::Comm { .. } => 24,
            EventData::Unknown { .. } => 0,
            _ => 16, // fork, uid, gid, ptrace, coredump, exit (whose parent fields are optional)
        };
        match ProcEvent::parse(&b[..n]) {
            Ok(got) => {
                prop_assert!(n >= PROC_EVENT_HDRLEN + member);
                prop_assert_eq!(got.data.what(), ev.data.what());
                prop_assert_eq!((got.cpu, got.timestamp_ns), (ev.cpu, ev.timestamp_ns));
                // What was decoded re-emits to the same bytes, as far as the prefix held whole fields (an
                // optional field cut in the middle, like exit's parent_tgid at n = 37, reads as absent: 0).
                let whole = n - n % 4;
                let mut again = [0u8; PROC_EVENT_LEN];
                got.emit(&mut again).unwrap();
                prop_assert_eq!(&again[..whole], &b[..whole]);
                if n == PROC_EVENT_LEN {
                    prop_assert_eq!(got, ev);
                }
            }
            Err(WireError::Truncated { needed, got }) => {
                prop_assert_eq!(got, n);
                prop_assert!(needed > n);
                prop_assert!(needed == PROC_EVENT_HDRLEN || needed == PROC_EVENT_HDRLEN + member);
            }
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn unknown_kinds_keep_their_length_and_64_bytes(what in arb_unknown_what(), union in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut b = what.to_ne_bytes().to_vec();
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(&union);
        let ev = ProcEvent::parse(&b).unwrap();
        let EventData::Unknown { what: w, len, data } = ev.data else { panic!("{ev:?}") };
        prop_assert_eq!((w, usize::from(len)), (what, union.len()));
        let kept = union.len().min(UNKNOWN_DATA_MAX);
        prop_assert_eq!(&data[..kept], &union[..kept]);
        prop_assert!(data[kept..].iter().all(|&x| x == 0));
        // It emits its header and what it kept, at least today's 24-byte union, and parses back to that.
        let mut out = [0xffu8; PROC_EVENT_HDRLEN + UNKNOWN_DATA_MAX];
        let n = ev.emit(&mut out).unwrap();
        prop_assert_eq!(n, ev.wire_len());
        prop_assert_eq!(n, PROC_EVENT_HDRLEN + kept.max(EVENT_DATA_LEN));
        let back = ProcEvent::parse(&out[..n]).unwrap();
        prop_assert_eq!(back.data, EventData::Unknown { what, len: (n - PROC_EVENT_HDRLEN) as u16, data });
    }

    #[test]
    fn proc_input_prefixes(input in arb_proc_input(), n in 0usize..=8) {
        let (b, len) = input.to_bytes();
        let n = n.min(len);
        match ProcInput::parse(&b[..n]) {
            Ok(_) => prop_assert!(n == 4 || n == 8),
            Err(WireError::LengthMismatch { claimed, .. }) => prop_assert!(claimed == n && n != 4 && n != 8),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Arbitrary bytes never panic.

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        walk_everything(&bytes);
        for cn in CnMsgs::new(&bytes) {
            let Ok(cn) = cn else { break };
            prop_assert!(cn.as_bytes().len() <= bytes.len());
        }
        let _ = NlMsg::new_checked(&bytes[..]).map(|m| (m.kind(), m.header(), m.payload().len()));
        let _ = CnMsg::new_checked(&bytes[..]).map(|m| (m.header(), m.data().len()));
    }

    #[test]
    fn arbitrary_proc_event_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match ProcEvent::parse(&bytes) {
            Ok(ev) => {
                // Whatever parsed re-emits and re-parses to the same value (an unknown kind with the length of
                // union it emits: what it kept, at least 24 bytes).
                let mut b = [0u8; PROC_EVENT_HDRLEN + UNKNOWN_DATA_MAX];
                let n = ev.emit(&mut b).unwrap();
                prop_assert_eq!(ProcEvent::parse(&b[..n]).unwrap(), as_emitted(ev));
                let _ = ev.to_string();
            }
            Err(WireError::Truncated { needed, got }) => prop_assert!(got == bytes.len() && needed > got),
            Err(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    #[test]
    fn arbitrary_proc_event_with_a_known_what(what in prop::sample::select(KNOWN_WHATS.to_vec()),
                                              rest in prop::collection::vec(any::<u8>(), 0..48)) {
        let mut bytes = what.to_ne_bytes().to_vec();
        bytes.extend(rest);
        if let Ok(ev) = ProcEvent::parse(&bytes) {
            prop_assert_eq!(ev.data.what(), what);
            let mut b = [0u8; PROC_EVENT_LEN];
            ev.emit(&mut b).unwrap();
            prop_assert_eq!(ProcEvent::parse(&b).unwrap(), ev);
        }
    }

    #[test]
    fn arbitrary_proc_input_bytes(bytes in prop::collection::vec(any::<u8>(), 0..12)) {
        match ProcInput::parse(&bytes) {
            Ok(input) => {
                let (b, n) = input.to_bytes();
                prop_assert_eq!(&b[..n], &bytes[..]);
            }
            Err(e) => {
                prop_assert!(bytes.len() != 4 && bytes.len() != 8);
                prop_assert!(matches!(e, WireError::LengthMismatch { .. }), "{:?}", e);
            }
        }
    }

    #[test]
    fn pretty_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let s = Pretty(&bytes).to_string();
        // Fewer than four bytes are padding: nothing to say. Otherwise there is a message or an error to show.
        prop_assert_eq!(s.is_empty(), bytes.len() < NLMSG_ALIGNTO, "{}", s);
    }

    #[test]
    fn pretty_and_walk_on_mutated_datagrams(d in arb_mutated_datagram()) {
        walk_everything(&d);
        let s = Pretty(&d).to_string();
        prop_assert!(!s.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// EventMask::admits against the spec's model, and its stated consequences.

proptest! {
    #[test]
    fn admits_matches_the_kernel_filter(mask in arb_mask(), what in arb_what(), exit_code in prop_oneof![Just(0u32), Just(768u32), any::<u32>()]) {
        prop_assert_eq!(mask.admits(what, exit_code), kernel_delivers(mask.0, what, exit_code),
                        "mask {:?} what {:#x} exit_code {}", mask, what, exit_code);
    }

    #[test]
    fn admits_consequences(sel in 0u32..1024, exit_code in any::<u32>()) {
        let mask = subset(sel);
        let is_subset = mask.0 != 0 && mask.0 != PROC_EVENT_ALL;
        // §5.5: a subset filter never receives acks; ALL (and the empty request, which becomes ALL) receives all.
        prop_assert_eq!(mask.admits(PROC_EVENT_NONE, 0), !is_subset);
        if !is_subset {
            for what in KNOWN_WHATS {
                prop_assert!(mask.admits(what, exit_code));
            }
        }
        // NONZERO_EXIT alone: exits with a non-zero code only. NONZERO_EXIT|EXIT: all exits.
        let nz = EventMask::NONZERO_EXIT;
        prop_assert_eq!(nz.admits(PROC_EVENT_EXIT, exit_code), exit_code != 0);
        prop_assert!((nz | EventMask::EXIT).admits(PROC_EVENT_EXIT, exit_code));
        for what in KNOWN_WHATS.into_iter().filter(|&w| w != PROC_EVENT_EXIT) {
            prop_assert!(!nz.admits(what, exit_code));
        }
        // Unknown bits never change the outcome.
        for what in KNOWN_WHATS {
            prop_assert_eq!(EventMask(mask.0 | 0x8 | 0x0001_0000).admits(what, exit_code), mask.admits(what, exit_code));
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// ExitStatus against libc's wait-status macros.

/// The statuses the kernel really puts in `exit_code` (spec §5.3): `code << 8` for `exit(code)`, `sig` or
/// `sig | 0x80` (core dumped) for a death by signal.
fn arb_kernel_status() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0u32..256).prop_map(|c| c << 8),
        (1u32..0x7f, any::<bool>()).prop_map(|(s, core)| s | (u32::from(core) << 7)),
    ]
}

proptest! {
    #[test]
    fn exit_status_agrees_with_libc_on_kernel_statuses(status in arb_kernel_status()) {
        let st = status as i32;
        match ExitStatus::from_raw(status) {
            ExitStatus::Exited(c) => prop_assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == i32::from(c)),
            ExitStatus::Signaled { signal, core_dumped } => {
                prop_assert!(libc::WIFSIGNALED(st) && !libc::WIFEXITED(st));
                prop_assert_eq!(libc::WTERMSIG(st), i32::from(signal));
                prop_assert_eq!(libc::WCOREDUMP(st), core_dumped);
            }
            ExitStatus::Other(raw) => prop_assert!(false, "kernel status {:#x} decoded as Other({:#x})", status, raw),
        }
        prop_assert_eq!(ExitStatus::from_raw(status).success(), status == 0);
    }

    #[test]
    fn exit_status_never_contradicts_libc(status in any::<u32>()) {
        let st = status as i32;
        match ExitStatus::from_raw(status) {
            ExitStatus::Exited(c) => prop_assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == i32::from(c)),
            ExitStatus::Signaled { signal, core_dumped } => {
                prop_assert!(libc::WIFSIGNALED(st));
                prop_assert_eq!(libc::WTERMSIG(st), i32::from(signal));
                prop_assert_eq!(libc::WCOREDUMP(st), core_dumped);
            }
            ExitStatus::Other(raw) => {
                prop_assert_eq!(raw, status);
                prop_assert!(!libc::WIFEXITED(st));
                // libc's WIFSIGNALED looks only at the low seven bits; the crate also requires the rest to be
                // clear (as the kernel leaves them), so the two differ only for statuses no kernel produces.
                prop_assert!(!libc::WIFSIGNALED(st) || status & 0xffff_ff00 != 0, "{:#x}", status);
            }
        }
        let _ = ExitStatus::from_raw(status).to_string();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Plain checks on the fixtures and limits.

#[test]
fn captured_fixtures_decode() {
    let nl: Vec<_> = NlMessages::new(&LISTEN).collect::<Result<_, _>>().unwrap();
    let cn = CnMsg::new_checked(nl[0].payload()).unwrap();
    assert_eq!(ProcInput::parse(cn.data()), Ok(ProcInput::Legacy(McastOp::Listen)));

    let nl = NlMsg::new_checked(&ACK[..]).unwrap();
    let cn = CnMsg::new_checked(nl.payload()).unwrap();
    let ev = ProcEvent::parse(cn.data()).unwrap();
    assert_eq!(ev.data, EventData::Ack { err: 0 });
    let mut again = [0u8; PROC_EVENT_LEN];
    ev.emit(&mut again).unwrap();
    assert_eq!(&again, cn.data());
    assert_eq!(walk_everything(&ACK), 1);
}

#[test]
fn datagram_data_longer_than_u16_is_too_long() {
    let data = vec![0u8; usize::from(u16::MAX) + 1];
    assert_eq!(
        datagram(CnMsgHdr::default(), &data, 0),
        Err(WireError::TooLong { len: data.len(), max: usize::from(u16::MAX) })
    );
    // The largest representable data length still frames.
    let d = datagram(CnMsgHdr::default(), &data[..usize::from(u16::MAX)], 0).unwrap();
    let nl = NlMsg::new_checked(&d[..]).unwrap();
    assert_eq!(CnMsg::new_checked(nl.payload()).unwrap().len(), u16::MAX);
}

#[test]
fn nlmsg_error_payloads() {
    let d = nl_message(NlMsgHdr { ty: NLMSG_ERROR, ..Default::default() }, &(-22i32).to_ne_bytes());
    assert_eq!(NlMsg::new_checked(&d[..]).unwrap().kind(), NlKind::Error(Some(-22)));
    let d = nl_message(NlMsgHdr { ty: NLMSG_ERROR, ..Default::default() }, &[1, 2, 3]);
    assert_eq!(NlMsg::new_checked(&d[..]).unwrap().kind(), NlKind::Error(None));
}
