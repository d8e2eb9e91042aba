//! A scripted proc connector that answers subscription requests as the kernel does (spec §5.3-§5.5, §10.3),
//! and a harness that drives [`Subscriber`] against it with simulated time.
//!
//! Kernel eras:
//! - [`Era::Modern`] (6.6+): per-socket `{op, event_type}` state, the 8-byte filtered form, `cn_filter` per
//!   receiving socket (a subset filter never sees acks), a repeated `LISTEN` counts once.
//! - [`Era::Pre66`] (up to 6.5): the 4-byte form only, no per-socket state: every `LISTEN` counts the listener
//!   number up and every `IGNORE` down.
//! - [`Era::Old`] (2.6 era): as `Pre66`, and acks bypass the per-CPU counter: `seq` is the request's, `cpu` is
//!   `0xffffffff`.
//!
//! In every era events and acks are only sent while the listener number is at least 1, events and acks (except
//! `Old` acks) take the sending CPU's next sequence number, and a socket whose queue is full drops what arrives,
//! counts it, and reports `ENOBUFS` once until its queue has been emptied.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cnlink::engine::{KernelRelease, Path, ProcItem, State, Subscriber, SubscriberConfig};
use cnlink::wire::{
    self, CbId, CnMsg, CnMsgHdr, EventData, EventMask, McastOp, NlAddr, NlMsg, ProcEvent, ProcInput, PROC_EVENT_ALL,
};

/// Which kernel the fake behaves like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    Modern,
    Pre66,
    Old,
}

/// A socket's handle.
pub(crate) type SockId = usize;

/// What a receive gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    Datagram(Vec<u8>),
    Overrun,
}

#[derive(Debug, Default)]
struct FakeSocket {
    open: bool,
    /// 6.6+: `sk_user_data` (`None` until the socket's first request).
    state: Option<(McastOp, EventMask)>,
    queue: VecDeque<Vec<u8>>,
    capacity: usize,
    congested: bool,
    enobufs: bool,
    drops: u32,
}

/// The fake proc connector.
#[derive(Debug)]
pub(crate) struct FakeKernel {
    pub(crate) era: Era,
    /// Requests are ignored without an ack (the sender is outside the initial user or pid namespace).
    pub(crate) ignore_requests: bool,
    /// Requests are refused with this errno, without effect (`EPERM` before 6.6 without `CAP_NET_ADMIN`).
    pub(crate) refuse: Option<u32>,
    /// `proc_event_num_listeners`.
    pub(crate) listeners: i64,
    /// Every request received: `(socket, cpu, what it asked)`.
    pub(crate) requests: Vec<(SockId, u32, ProcInput)>,
    counters: Vec<u32>,
    sockets: Vec<FakeSocket>,
    /// Per socket (by id, also for sockets not opened yet): acks to drop as if they had not fit (they count as
    /// drops and raise `ENOBUFS`).
    lose_acks: Vec<u32>,
}

impl FakeKernel {
    pub(crate) fn new(era: Era, cpus: usize) -> FakeKernel {
        FakeKernel {
            era,
            ignore_requests: false,
            refuse: None,
            listeners: 0,
            requests: Vec::new(),
            // Start the counters somewhere in the middle, as on a machine that has been up for a while.
            counters: (0..cpus).map(|c| 1000 * (c as u32 + 1)).collect(),
            sockets: Vec::new(),
            lose_acks: Vec::new(),
        }
    }

    /// A socket joined to the proc group, whose queue holds `capacity` datagrams.
    pub(crate) fn open(&mut self, capacity: usize) -> SockId {
        self.sockets.push(FakeSocket { open: true, capacity, ..Default::default() });
        self.sockets.len() - 1
    }

    /// Closes a socket (the kernel keeps the listener number as it is: closing does not count it down).
    pub(crate) fn close(&mut self, sock: SockId) {
        self.sockets[sock] = FakeSocket::default();
    }

    /// Makes socket `sock` (the `sock`-th opened, counting from 0) lose the next `n` acks it would receive, as an
    /// overflow does.
    pub(crate) fn lose_acks(&mut self, sock: SockId, n: u32) {
        if self.lose_acks.len() <= sock {
            self.lose_acks.resize(sock + 1, 0);
        }
        self.lose_acks[sock] = n;
    }

    /// The socket's drop counter (`SK_MEMINFO_DROPS`).
    pub(crate) fn drops(&self, sock: SockId) -> u32 {
        self.sockets[sock].drops
    }

    /// The next sequence number `cpu` will use.
    pub(crate) fn next_seq(&self, cpu: u32) -> u32 {
        self.counters[cpu as usize]
    }

    /// How many `LISTEN`s of any form the kernel received.
    pub(crate) fn listens(&self) -> usize {
        self.requests.iter().filter(|(_, _, r)| op_of(r) == McastOp::Listen).count()
    }

    /// A datagram sent by `sock` from `cpu` to the kernel (port 0).
    pub(crate) fn request(&mut self, sock: SockId, cpu: u32, datagram: &[u8]) {
        let nl = NlMsg::new_checked(datagram).expect("a netlink message");
        let cn = CnMsg::new_checked(nl.payload()).expect("a connector message");
        assert_eq!(cn.id(), CbId::PROC, "requests go to the proc connector");
        let Ok(input) = ProcInput::parse(cn.data()) else { return };
        self.requests.push((sock, cpu, input));
        if self.era != Era::Modern && matches!(input, ProcInput::Filtered { .. }) {
            return; // Before 6.6 any length but 4 is ignored.
        }
        if self.ignore_requests {
            return;
        }
        let err = match self.refuse {
            Some(e) => e,
            None => {
                self.apply(sock, input);
                0
            }
        };
        self.ack(cpu, cn.seq(), cn.ack(), err);
    }

    /// What `cn_proc_mcast_ctl` does with a request.
    fn apply(&mut self, sock: SockId, input: ProcInput) {
        let (op, events) = match input {
            ProcInput::Legacy(op) => (op, EventMask::ALL),
            ProcInput::Filtered { op, events } => (op, events),
        };
        if self.era != Era::Modern {
            match op {
                McastOp::Listen => self.listeners += 1,
                McastOp::Ignore => self.listeners -= 1,
                McastOp::Unknown(_) => {}
            }
            return;
        }
        let events = match events.0 & PROC_EVENT_ALL {
            0 => EventMask::ALL,
            e => EventMask(e),
        };
        let s = &mut self.sockets[sock];
        let prev = s.state.map(|(op, _)| op);
        match op {
            McastOp::Listen => {
                if prev != Some(McastOp::Listen) {
                    self.listeners += 1;
                }
                s.state = Some((op, events));
            }
            McastOp::Ignore => {
                if prev.is_some() && prev != Some(McastOp::Ignore) {
                    self.listeners -= 1;
                }
                s.state = Some((op, EventMask::NONE));
            }
            McastOp::Unknown(_) => s.state = Some((op, events)),
        }
    }

    /// `cn_proc_ack`: multicast, only while someone listens.
    fn ack(&mut self, cpu: u32, req_seq: u32, req_ack: u32, err: u32) {
        if self.listeners < 1 {
            return;
        }
        let (seq, cpu) = match self.era {
            Era::Old => (req_seq, u32::MAX),
            Era::Modern | Era::Pre66 => (self.take_seq(cpu), cpu),
        };
        self.send(seq, req_ack.wrapping_add(1), cpu, EventData::Ack { err });
    }

    /// An event on `cpu`, sent if anyone listens.
    pub(crate) fn event(&mut self, cpu: u32, data: EventData) {
        if self.listeners < 1 {
            return;
        }
        let seq = self.take_seq(cpu);
        self.send(seq, 0, cpu, data);
    }

    /// `n` forks on `cpu`.
    pub(crate) fn forks(&mut self, cpu: u32, n: u32) {
        for i in 0..n {
            let pid = 10_000 + i as i32;
            self.event(cpu, EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: pid, child_tgid: pid });
        }
    }

    /// `n` exits with code `code` on `cpu`.
    pub(crate) fn exits(&mut self, cpu: u32, n: u32, code: u32) {
        for i in 0..n {
            let pid = 20_000 + i as i32;
            self.event(
                cpu,
                EventData::Exit {
                    process_pid: pid,
                    process_tgid: pid,
                    exit_code: code,
                    exit_signal: 17,
                    parent_pid: 1,
                    parent_tgid: 1,
                },
            );
        }
    }

    fn take_seq(&mut self, cpu: u32) -> u32 {
        let c = &mut self.counters[cpu as usize];
        let seq = *c;
        *c = c.wrapping_add(1);
        seq
    }

    fn send(&mut self, seq: u32, ack: u32, cpu: u32, data: EventData) {
        let mut ev = [0u8; 40];
        ProcEvent { cpu, timestamp_ns: 1, data }.emit(&mut ev).unwrap();
        let dgram = wire::datagram(CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() }, &ev, 0).unwrap();
        let exit_code = match data {
            EventData::Exit { exit_code, .. } => exit_code,
            _ => 0,
        };
        let era = self.era;
        for (id, s) in self.sockets.iter_mut().enumerate().filter(|(_, s)| s.open) {
            if era == Era::Modern && !cn_filter(s.state, data.what(), exit_code) {
                continue;
            }
            let lose = self.lose_acks.get_mut(id).filter(|n| **n > 0);
            if let (EventData::Ack { .. }, Some(n)) = (data, lose) {
                *n -= 1;
                overflow(s);
                continue;
            }
            if s.congested || s.queue.len() >= s.capacity {
                overflow(s);
                continue;
            }
            s.queue.push_back(dgram.clone());
        }
    }

    /// Receives on `sock`: a pending `ENOBUFS` first, then the queue. Every receive that leaves the queue empty
    /// (also one that fails) ends the congestion (`netlink_rcv_wake`).
    pub(crate) fn recv(&mut self, sock: SockId) -> Option<Received> {
        let s = &mut self.sockets[sock];
        let r = if std::mem::take(&mut s.enobufs) {
            Some(Received::Overrun)
        } else {
            s.queue.pop_front().map(Received::Datagram)
        };
        if s.queue.is_empty() {
            s.congested = false;
        }
        r
    }
}

fn overflow(s: &mut FakeSocket) {
    s.drops = s.drops.wrapping_add(1);
    if !s.congested {
        s.congested = true;
        s.enobufs = true;
    }
}

/// `cn_filter` (6.6+): whether a socket with this state receives a message of kind `what`.
fn cn_filter(state: Option<(McastOp, EventMask)>, what: u32, exit_code: u32) -> bool {
    match state {
        None => true,
        Some((McastOp::Ignore, _)) => false,
        Some((_, events)) => {
            events.0 == PROC_EVENT_ALL
                || (events.contains(EventMask::NONZERO_EXIT) && what == EventMask::EXIT.0 && exit_code != 0)
                || events.0 & what != 0
        }
    }
}

fn op_of(r: &ProcInput) -> McastOp {
    match *r {
        ProcInput::Legacy(op) | ProcInput::Filtered { op, .. } => op,
    }
}

/// A [`Subscriber`] wired to a [`FakeKernel`] the way the drivers wire it to sockets, with simulated time.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) kernel: FakeKernel,
    pub(crate) engine: Subscriber,
    pub(crate) main: SockId,
    pub(crate) probe: Option<SockId>,
    pub(crate) now: Instant,
    pub(crate) start: Instant,
    /// The CPU requests without a CPU of their own are sent from.
    pub(crate) home_cpu: u32,
    /// What the driver passes for the drop counter (`None`: it could not be read).
    pub(crate) drop_counter_readable: bool,
    /// Every item, in order.
    pub(crate) items: Vec<ProcItem>,
    /// How many transmits each `pump` round found waiting at once.
    pub(crate) bursts: Vec<usize>,
    capacity: usize,
}

/// A 6.18 kernel on a machine whose CPUs are `0..cpus`, all of them in the affinity set.
pub(crate) fn config(cpus: u32) -> SubscriberConfig {
    SubscriberConfig {
        initial_ack: 0x7000_0000,
        kernel: Some(KernelRelease { major: 6, minor: 18 }),
        affinity: Some((0..cpus).collect()),
        online: Some((0..cpus).collect()),
        ..Default::default()
    }
}

impl Harness {
    /// Opens the main socket (queue of `capacity` datagrams), starts the engine and runs the handshake as far as
    /// it goes without time passing.
    pub(crate) fn start(kernel: FakeKernel, config: SubscriberConfig, capacity: usize) -> Harness {
        let mut kernel = kernel;
        let main = kernel.open(capacity);
        let now = Instant::now();
        let engine = Subscriber::new(now, config).expect("a valid configuration");
        let mut h = Harness {
            kernel,
            engine,
            main,
            probe: None,
            now,
            start: now,
            home_cpu: 0,
            drop_counter_readable: true,
            items: Vec::new(),
            bursts: Vec::new(),
            capacity,
        };
        h.pump();
        h
    }

    /// Runs the driver loop until nothing moves: probe socket as wanted, transmits sent, sockets drained.
    pub(crate) fn pump(&mut self) {
        loop {
            match (self.engine.probe_wanted(), self.probe) {
                (true, None) => self.probe = Some(self.kernel.open(self.capacity.max(64))),
                (false, Some(p)) => {
                    self.kernel.close(p);
                    self.probe = None;
                }
                _ => {}
            }
            let mut burst = 0;
            while let Some(t) = self.engine.poll_transmit() {
                burst += 1;
                let sock = match t.path {
                    Path::Main => self.main,
                    Path::Probe => self.probe.expect("the probe is open while it sends"),
                };
                self.kernel.request(sock, t.cpu.unwrap_or(self.home_cpu), t.datagram());
            }
            if burst > 0 {
                self.bursts.push(burst);
            }
            let mut moved = burst > 0;
            for (path, sock) in [(Path::Main, Some(self.main)), (Path::Probe, self.probe)] {
                let Some(sock) = sock else { continue };
                while let Some(r) = self.kernel.recv(sock) {
                    moved = true;
                    match r {
                        Received::Datagram(d) => self.engine.handle(self.now, path, NlAddr::KERNEL, &d),
                        Received::Overrun => self.engine.handle_overrun(self.now, path),
                    }
                }
            }
            if self.engine.drop_count_wanted() {
                let drops = self.drop_counter_readable.then(|| self.kernel.drops(self.main));
                self.engine.handle_drop_count(self.now, drops);
            }
            self.engine.drain_items(&mut self.items);
            if !moved {
                return;
            }
        }
    }

    /// Lets `d` of simulated time pass, running the engine's timers as they fall due.
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.engine.poll_timeout().filter(|&t| t <= end) {
            self.now = self.now.max(t);
            self.engine.handle_timeout(self.now);
            self.pump();
        }
        self.now = end;
        self.pump();
    }

    /// Closes the subscription and sends its `IGNORE`s.
    pub(crate) fn close(&mut self) {
        self.engine.close();
        self.pump();
    }

    pub(crate) fn state(&self) -> State {
        self.engine.state()
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The `Lost` items so far.
    pub(crate) fn losses(&self) -> Vec<cnlink::engine::Loss> {
        self.items.iter().filter_map(|i| if let ProcItem::Lost(l) = i { Some(*l) } else { None }).collect()
    }

    /// The events so far.
    pub(crate) fn events(&self) -> Vec<EventData> {
        self.items.iter().filter_map(|i| if let ProcItem::Event(e) = i { Some(e.data) } else { None }).collect()
    }
}
