//! The proc subscription engine without IO: a `cnlink::engine::Subscriber` is fed acks to its own requests (on
//! either socket, from any CPU, with any errno, or lost), other processes' acks, events, garbage, overruns, drop
//! counts and time, and after every step the checks hold:
//!
//! - every request is a proc connector datagram to the kernel with a valid `LISTEN`/`IGNORE`, sent on the main
//!   socket; only resync `LISTEN`s name a CPU, only CPUs of the affinity set, and only while subscribed without a
//!   kernel filter on a 6.6+ kernel;
//! - resyncs are at least a second apart; before 6.6 (release known) at most one `LISTEN` ever goes out;
//! - a model of the kernel's listener count (6.6+ per-socket state, or the stateless count of older kernels),
//!   fed every request as if the kernel had processed it, is back to where it started after `close`;
//! - states only move forward; the probe is wanted only while subscribing; after `handle_timeout(now)` no timer is
//!   due at or before `now`;
//! - the counters add up to the items: `lost` is the sum of the `Lost` counts, `lost_inexact` the number of
//!   inexact ones, `overruns` the number of `Overrun`s.
//!
//! Input: one config byte (bits 0-1: release 6.18 / 5.15 / unknown-and-6.6+ / unknown-and-older; bit 2: a subset
//! of events; bit 3: kernel filter wanted; bit 4: affinity misses CPU 3; bit 5: online CPUs unknown), then records
//! until the bytes run out, each a byte `k` (`k & 7` the action) and its fields:
//!
//! ```text
//! 0  ack to our request   n (which request, from the newest) cpu err-choice path (none to a filtered request
//!                         before 6.6, which ignores them)
//! 1  other process's ack  cpu seq
//! 2  event                cpu seq-step kind
//! 3  raw datagram         path len bytes[len]
//! 4  overrun              path
//! 5  drop count           value (0xff: unreadable)
//! 6  time passes          tens of milliseconds
//! 7  close
//! ```
#![no_main]

use std::time::{Duration, Instant};

use cnlink::engine::subscriber::RESYNC_INTERVAL;
use cnlink::engine::{KernelRelease, Loss, Path, ProcItem, State, Subscriber, SubscriberConfig, SubscriberEvent};
use cnlink::wire::{self, CbId, CnMsg, CnMsgHdr, EventData, EventMask, McastOp, NlAddr, NlMsg, ProcEvent, ProcInput};
use libfuzzer_sys::fuzz_target;

const CPUS: u32 = 4;

struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        a
    }
    fn path(&mut self) -> Path {
        if self.u8() & 1 == 0 {
            Path::Main
        } else {
            Path::Probe
        }
    }
}

fn datagram(seq: u32, ack: u32, cpu: u32, data: EventData) -> Vec<u8> {
    let mut ev = [0u8; 40];
    ProcEvent { cpu, timestamp_ns: 1, data }.emit(&mut ev).unwrap();
    wire::datagram(CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() }, &ev, 0).unwrap()
}

/// The listener count as the kernel keeps it, fed every request.
struct KernelModel {
    modern: bool,
    /// 6.6+: the socket's last op (`None` before its first request).
    last_op: Option<McastOp>,
    listeners: i64,
}

impl KernelModel {
    fn apply(&mut self, input: ProcInput) {
        let op = match input {
            ProcInput::Legacy(op) => op,
            ProcInput::Filtered { op, .. } if self.modern => op,
            ProcInput::Filtered { .. } => return, // ignored before 6.6
        };
        if !self.modern {
            match op {
                McastOp::Listen => self.listeners += 1,
                McastOp::Ignore => self.listeners -= 1,
                McastOp::Unknown(_) => {}
            }
            return;
        }
        match op {
            McastOp::Listen if self.last_op != Some(McastOp::Listen) => self.listeners += 1,
            McastOp::Ignore if self.last_op.is_some() && self.last_op != Some(McastOp::Ignore) => self.listeners -= 1,
            _ => {}
        }
        self.last_op = Some(op);
    }
}

struct Run {
    engine: Subscriber,
    now: Instant,
    model: KernelModel,
    kernel_known_old: bool,
    affinity: Vec<u32>,
    /// `(ack the answer carries, what was asked)` of every request, oldest first.
    sent: Vec<(u32, ProcInput)>,
    legacy_listens: u32,
    last_resync: Option<Instant>,
    items: Vec<ProcItem>,
    rank: u8,
    closed: bool,
}

impl Run {
    /// Takes and checks every transmit.
    fn transmits(&mut self) {
        let mut resync_burst = false;
        while let Some(t) = self.engine.poll_transmit() {
            assert_eq!(t.path, Path::Main, "requests go out of the main socket");
            let nl = NlMsg::new_checked(t.datagram()).expect("a netlink message");
            let cn = CnMsg::new_checked(nl.payload()).expect("a connector message");
            assert_eq!(cn.id(), CbId::PROC);
            let input = ProcInput::parse(cn.data()).expect("a valid request");
            assert_eq!(input, t.request);
            let op = match input {
                ProcInput::Legacy(op) | ProcInput::Filtered { op, .. } => op,
            };
            assert!(matches!(op, McastOp::Listen | McastOp::Ignore));
            if input == ProcInput::Legacy(McastOp::Listen) {
                self.legacy_listens += 1;
            }
            if let Some(cpu) = t.cpu {
                assert_eq!(input, ProcInput::Legacy(McastOp::Listen), "only resync LISTENs name a CPU");
                assert!(self.affinity.contains(&cpu), "cpu {cpu} is not in the affinity set");
                assert!(
                    matches!(self.engine.state(), State::Subscribed { kernel_filtered: false }),
                    "a resync only while subscribed without a kernel filter"
                );
                assert!(!self.kernel_known_old, "no resync before 6.6");
                resync_burst = true;
            }
            self.model.apply(input);
            self.sent.push((cn.ack().wrapping_add(1), input));
        }
        if resync_burst {
            if let Some(last) = self.last_resync {
                assert!(self.now >= last + RESYNC_INTERVAL, "two resyncs within a second");
            }
            self.last_resync = Some(self.now);
        }
        if self.kernel_known_old {
            assert!(self.legacy_listens <= 1, "before 6.6 every LISTEN counts: only one may go out");
        }
    }

    fn check(&mut self) {
        self.transmits();
        let state = self.engine.state();
        let rank = match state {
            State::Subscribing => 0,
            State::Subscribed { .. } | State::Failed(_) => 1,
            State::Closed => 2,
        };
        assert!(rank >= self.rank, "the state went back to {state:?}");
        self.rank = rank;
        if self.engine.probe_wanted() {
            assert_eq!(state, State::Subscribing);
        }
        while let Some(ev) = self.engine.poll_event() {
            if let SubscriberEvent::Item(i) = ev {
                self.items.push(i);
            }
        }
        let c = self.engine.counters();
        let lost: u64 =
            self.items.iter().filter_map(|i| if let ProcItem::Lost(l) = i { l.count() } else { None }).sum();
        let inexact = self.items.iter().filter(|i| matches!(i, ProcItem::Lost(l) if !l.is_exact())).count() as u64;
        let overruns = self.items.iter().filter(|i| **i == ProcItem::Overrun).count() as u64;
        assert_eq!((c.lost, c.lost_inexact, c.overruns), (lost, inexact, overruns));
        assert!(self.items.iter().all(|i| !matches!(i, ProcItem::Lost(Loss::Exact(0) | Loss::AtLeast(0)))));
        if self.closed {
            assert_eq!(self.model.listeners, 0, "the listener count stayed raised after close");
        }
    }

    fn timeout(&mut self) {
        if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.engine.handle_timeout(self.now);
            assert!(self.engine.poll_timeout().is_none_or(|t| t > self.now), "a timer still due after it ran");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let cfg = b.u8();
    let (kernel, modern) = match cfg & 3 {
        0 => (Some(KernelRelease { major: 6, minor: 18 }), true),
        1 => (Some(KernelRelease { major: 5, minor: 15 }), false),
        2 => (None, true),
        _ => (None, false),
    };
    let affinity: Vec<u32> = if cfg & 0x10 != 0 { vec![0, 1, 2] } else { (0..CPUS).collect() };
    let config = SubscriberConfig {
        events: if cfg & 4 != 0 { EventMask::EXIT | EventMask::FORK } else { EventMask::ALL },
        kernel_filter: cfg & 8 != 0,
        ack_timeout: Duration::from_secs(1),
        initial_ack: u32::MAX - 3,
        kernel,
        affinity: Some(affinity.iter().copied().collect()),
        online: (cfg & 0x20 == 0).then(|| (0..CPUS).collect()),
    };
    let now = Instant::now();
    let mut run = Run {
        engine: Subscriber::new(now, config).unwrap(),
        now,
        model: KernelModel { modern, last_op: None, listeners: 0 },
        kernel_known_old: kernel.is_some() && !modern,
        affinity,
        sent: Vec::new(),
        legacy_listens: 0,
        last_resync: None,
        items: Vec::new(),
        rank: 0,
        closed: false,
    };
    let mut seqs = [100u32; CPUS as usize];
    run.check();
    while !b.0.is_empty() {
        let k = b.u8();
        match k & 7 {
            0 if !run.sent.is_empty() => {
                let n = b.u8() as usize % run.sent.len();
                let (ack, request) = run.sent[run.sent.len() - 1 - n];
                if !run.model.modern && matches!(request, ProcInput::Filtered { .. }) {
                    continue; // a kernel before 6.6 never answers the 8-byte form
                }
                let cpu = match b.u8() % 5 {
                    4 => u32::MAX,
                    c => u32::from(c),
                };
                let err = [0, 0, 0, 1, 12, 22][b.u8() as usize % 6];
                let seq = seqs.get_mut(cpu as usize).map_or(7, |s| {
                    *s += 1;
                    *s
                });
                let path = b.path();
                run.engine.handle(run.now, path, NlAddr::KERNEL, &datagram(seq, ack, cpu, EventData::Ack { err }));
            }
            1 => {
                let cpu = u32::from(b.u8() % CPUS as u8);
                let seq = u32::from(b.u8());
                run.engine.handle(
                    run.now,
                    Path::Main,
                    NlAddr::KERNEL,
                    &datagram(seq, 0x1234, cpu, EventData::Ack { err: 0 }),
                );
            }
            2 => {
                let cpu = u32::from(b.u8() % CPUS as u8);
                let s = &mut seqs[cpu as usize];
                *s = s.wrapping_add(u32::from(b.u8() % 8));
                let data = if b.u8() & 1 == 0 {
                    EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 2, child_tgid: 2 }
                } else {
                    EventData::Exec { process_pid: 2, process_tgid: 2 }
                };
                run.engine.handle(run.now, Path::Main, NlAddr::KERNEL, &datagram(*s, 0, cpu, data));
            }
            3 => {
                let path = b.path();
                let len = b.u8() as usize;
                let bytes = b.take(len);
                let from = if k & 8 == 0 { NlAddr::KERNEL } else { NlAddr::port(77) };
                run.engine.handle(run.now, path, from, bytes);
            }
            4 => {
                let path = b.path();
                run.engine.handle_overrun(run.now, path);
            }
            5 => {
                let v = b.u8();
                if run.engine.drop_count_wanted() || k & 8 != 0 {
                    run.engine.handle_drop_count(run.now, (v != 0xff).then_some(u32::from(v)));
                }
            }
            6 => {
                run.now += Duration::from_millis(10 * u64::from(b.u8()));
                run.timeout();
            }
            7 => {
                run.engine.close();
                run.closed = true;
            }
            _ => {}
        }
        run.check();
    }
    run.engine.close();
    run.closed = true;
    run.check();
});
