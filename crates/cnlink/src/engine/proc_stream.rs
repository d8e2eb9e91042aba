//! Turning received proc connector datagrams into typed items, with trust, filtering and loss accounting.
//!
//! [`ProcDecoder`] takes each datagram with its sender address and appends [`ProcItem`]s: events, acks, `Lost`
//! records computed from per-CPU `seq` gaps, and `Overrun` markers for `ENOBUFS`. It drops (and counts)
//! datagrams that did not come from the kernel, malformed ones, and events the userspace filter rejects. The
//! subscription itself (requests, acks, resyncs) is [`super::Subscriber`]'s business.

use crate::wire::{CbId, CnMsgs, EventData, EventMask, NlAddr, NlKind, NlMessages, ProcEvent};

use super::loss::{Loss, SeqObservation, SeqTracker};

/// One proc event with the kernel's per-CPU sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// `cn_msg.seq`: the sending CPU's message counter.
    pub seq: u32,
    /// The CPU that sent the event.
    pub cpu: u32,
    /// `CLOCK_MONOTONIC` time of the event, in nanoseconds.
    pub timestamp_ns: u64,
    /// What happened.
    pub data: EventData,
}

/// What a proc event stream yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcItem {
    /// An event.
    Event(Event),
    /// Proc messages were lost before the next item: from per-CPU `seq` gaps on an unfiltered stream, from the
    /// socket's drop counter on a kernel-filtered one. [`Loss`] says whether the count is exact.
    Lost(Loss),
    /// A subscription ack (`PROC_EVENT_NONE`): some socket, maybe another process's, subscribed or unsubscribed.
    /// Every unfiltered listener sees every ack; they take part in the `seq` numbering like events.
    Ack {
        /// `cn_msg.seq`.
        seq: u32,
        /// The CPU that sent it (`0xffffffff` from kernels that bypass the per-CPU counter for acks).
        cpu: u32,
        /// `cn_msg.ack`: the request's `ack + 1`, which tells whose request it answers.
        ack: u32,
        /// The errno it carries (0 for success).
        err: u32,
    },
    /// The kernel reported an overrun (`ENOBUFS`): messages were dropped. The count follows as `Lost`: at once
    /// from the drop counter of a kernel-filtered socket, else as the gaps are seen.
    Overrun,
}

/// Counters of a proc subscription: what the decoder saw, what was lost, and what the subscription sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcCounters {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Events delivered.
    pub events: u64,
    /// Events dropped by the userspace filter.
    pub filtered: u64,
    /// Subscription acks seen (ours and other processes').
    pub acks: u64,
    /// Messages lost: the sum of the counts of the `Lost` items (exact ones and lower bounds).
    pub lost: u64,
    /// `Lost` items whose count was a lower bound or unknown; while 0, `lost` is exact.
    pub lost_inexact: u64,
    /// `ENOBUFS` reports.
    pub overruns: u64,
    /// Datagrams dropped because they did not come from the kernel (sender port id not 0).
    pub rejected: u64,
    /// Datagrams or messages that did not decode.
    pub malformed: u64,
    /// Datagrams longer than the receive buffer, cut by the kernel (`MSG_TRUNC`); what was whole was decoded.
    pub truncated: u64,
    /// Connector messages for another id than the proc connector's.
    pub foreign: u64,
    /// Subscription requests sent (`LISTEN` and `IGNORE`, each CPU's counted).
    pub requests: u64,
    /// Acks that answered this subscription's own requests.
    pub own_acks: u64,
    /// Per-CPU resyncs run (each sends one `LISTEN` per CPU that had not been heard from).
    pub resyncs: u64,
}

/// The sans-IO proc event decoder: datagrams in, [`ProcItem`]s out.
#[derive(Debug, Clone)]
pub struct ProcDecoder {
    filter: EventMask,
    count_gaps: bool,
    gaps_exact: bool,
    tracker: SeqTracker,
    counters: ProcCounters,
}

impl ProcDecoder {
    /// A decoder that delivers the events `filter` admits (by the kernel's own rule).
    ///
    /// `count_gaps` turns `seq` gap accounting on; it is exact only when the socket receives every proc message,
    /// that is when no kernel-side filter is installed.
    pub fn new(filter: EventMask, count_gaps: bool) -> Self {
        ProcDecoder {
            filter,
            count_gaps,
            gaps_exact: true,
            tracker: SeqTracker::new(),
            counters: ProcCounters::default(),
        }
    }

    /// Turns `seq` gap accounting on or off (on when a kernel-side filter turns out not to be installed).
    pub fn set_count_gaps(&mut self, on: bool) {
        self.count_gaps = on;
    }

    /// Whether the gaps found from now on are reported as [`Loss::Exact`] or as [`Loss::AtLeast`].
    pub fn set_gaps_exact(&mut self, exact: bool) {
        self.gaps_exact = exact;
    }

    /// Whether a message from `cpu` has been seen (see [`SeqTracker::has_baseline`]).
    pub fn has_baseline(&self, cpu: u32) -> bool {
        self.tracker.has_baseline(cpu)
    }

    /// The counters so far.
    pub fn counters(&self) -> ProcCounters {
        self.counters
    }

    /// The counters, for the subscription that owns this decoder to add its own.
    pub(crate) fn counters_mut(&mut self) -> &mut ProcCounters {
        &mut self.counters
    }

    /// Records an `ENOBUFS` from the socket.
    pub fn handle_overrun(&mut self, out: &mut Vec<ProcItem>) {
        self.counters.overruns += 1;
        out.push(ProcItem::Overrun);
    }

    /// Records a loss found by other means than `seq` gaps (the socket's drop counter).
    pub fn handle_loss(&mut self, loss: Loss, out: &mut Vec<ProcItem>) {
        self.counters.lost += loss.count().unwrap_or(0);
        self.counters.lost_inexact += u64::from(!loss.is_exact());
        out.push(ProcItem::Lost(loss));
    }

    /// Decodes one datagram received from `from`, appending what it holds to `out`.
    pub fn handle(&mut self, from: NlAddr, datagram: &[u8], out: &mut Vec<ProcItem>) {
        self.counters.datagrams += 1;
        if from.port != 0 {
            self.counters.rejected += 1;
            return;
        }
        for msg in NlMessages::new(datagram) {
            let Ok(msg) = msg else {
                self.counters.malformed += 1;
                return;
            };
            match msg.kind() {
                NlKind::Data(_) => {}
                NlKind::Overrun => {
                    self.handle_overrun(out);
                    continue;
                }
                NlKind::Noop | NlKind::Error(_) => continue,
            }
            for cn in CnMsgs::new(msg.payload()) {
                let Ok(cn) = cn else {
                    self.counters.malformed += 1;
                    break;
                };
                if cn.id() != CbId::PROC {
                    self.counters.foreign += 1;
                    continue;
                }
                match ProcEvent::parse(cn.data()) {
                    Ok(ev) => self.event(cn.seq(), cn.ack(), ev, out),
                    Err(_) => self.counters.malformed += 1,
                }
            }
        }
    }

    fn event(&mut self, seq: u32, ack: u32, ev: ProcEvent, out: &mut Vec<ProcItem>) {
        if self.count_gaps {
            if let SeqObservation::Gap { lost } = self.tracker.observe(ev.cpu, seq) {
                let n = u64::from(lost);
                self.handle_loss(if self.gaps_exact { Loss::Exact(n) } else { Loss::AtLeast(n) }, out);
            }
        }
        if let EventData::Ack { err } = ev.data {
            self.counters.acks += 1;
            out.push(ProcItem::Ack { seq, cpu: ev.cpu, ack, err });
            return;
        }
        let exit_code = match ev.data {
            EventData::Exit { exit_code, .. } => exit_code,
            _ => 0,
        };
        if !self.filter.admits(ev.data.what(), exit_code) {
            self.counters.filtered += 1;
            return;
        }
        self.counters.events += 1;
        out.push(ProcItem::Event(Event { seq, cpu: ev.cpu, timestamp_ns: ev.timestamp_ns, data: ev.data }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{datagram, CnMsgHdr};

    fn proc_msg(seq: u32, ack: u32, cpu: u32, data: EventData) -> Vec<u8> {
        let mut ev = [0u8; 40];
        ProcEvent { cpu, timestamp_ns: 1, data }.emit(&mut ev).unwrap();
        datagram(CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() }, &ev, 0).unwrap()
    }

    fn fork(child: i32) -> EventData {
        EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: child, child_tgid: child }
    }

    fn exit(code: u32) -> EventData {
        EventData::Exit {
            process_pid: 9,
            process_tgid: 9,
            exit_code: code,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
        }
    }

    #[test]
    fn gaps_become_exact_lost_records() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        for (seq, cpu) in [(10, 0), (11, 0), (50, 1), (15, 0), (51, 1)] {
            d.handle(NlAddr::KERNEL, &proc_msg(seq, 0, cpu, fork(seq as i32)), &mut out);
        }
        let lost: Vec<_> = out.iter().filter_map(|i| if let ProcItem::Lost(l) = i { Some(*l) } else { None }).collect();
        assert_eq!(lost, [Loss::Exact(3)]);
        assert_eq!(out.len(), 6);
        assert_eq!(out[3], ProcItem::Lost(Loss::Exact(3)), "the Lost record comes before the event after the gap");
        assert_eq!(d.counters().lost, 3);
        assert_eq!(d.counters().lost_inexact, 0);
        d.set_gaps_exact(false);
        out.clear();
        d.handle(NlAddr::KERNEL, &proc_msg(20, 0, 0, fork(20)), &mut out);
        assert_eq!(out[0], ProcItem::Lost(Loss::AtLeast(4)));
        assert_eq!((d.counters().lost, d.counters().lost_inexact), (7, 1));
    }

    #[test]
    fn spoofed_sender_is_rejected() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        d.handle(NlAddr { port: 4242, groups: 1 }, &proc_msg(1, 0, 0, fork(5)), &mut out);
        assert!(out.is_empty());
        assert_eq!(d.counters().rejected, 1);
    }

    #[test]
    fn acks_carry_their_ack_field() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        d.handle(NlAddr::KERNEL, &proc_msg(7, 0x1234, 0, EventData::Ack { err: 0 }), &mut out);
        d.handle(NlAddr::KERNEL, &proc_msg(8, 0x55667789, 0, EventData::Ack { err: 1 }), &mut out);
        assert_eq!(
            out,
            [
                ProcItem::Ack { seq: 7, cpu: 0, ack: 0x1234, err: 0 },
                ProcItem::Ack { seq: 8, cpu: 0, ack: 0x55667789, err: 1 }
            ]
        );
        assert_eq!(d.counters().acks, 2);
    }

    #[test]
    fn an_overrun_message_is_not_read_as_connector_data() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        // NLMSG_OVERRUN whose payload would decode as a proc event if it were walked.
        let mut dgram = proc_msg(1, 0, 0, fork(3));
        dgram[4..6].copy_from_slice(&crate::wire::NLMSG_OVERRUN.to_ne_bytes());
        d.handle(NlAddr::KERNEL, &dgram, &mut out);
        assert_eq!(out, [ProcItem::Overrun]);
        assert_eq!(d.counters().events, 0);
    }

    #[test]
    fn userspace_filter_still_counts_gaps() {
        let mut d = ProcDecoder::new(EventMask::NONZERO_EXIT, true);
        let mut out = Vec::new();
        d.handle(NlAddr::KERNEL, &proc_msg(1, 0, 0, exit(0)), &mut out);
        d.handle(NlAddr::KERNEL, &proc_msg(2, 0, 0, fork(3)), &mut out);
        d.handle(NlAddr::KERNEL, &proc_msg(4, 0, 0, exit(256)), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], ProcItem::Lost(Loss::Exact(1)));
        assert!(matches!(out[1], ProcItem::Event(Event { seq: 4, data: EventData::Exit { exit_code: 256, .. }, .. })));
        assert_eq!(d.counters().filtered, 2);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        d.handle(NlAddr::KERNEL, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17], &mut out);
        let mut short = proc_msg(1, 0, 0, fork(3));
        short.truncate(50);
        d.handle(NlAddr::KERNEL, &short, &mut out);
        assert!(out.is_empty());
        assert_eq!(d.counters().malformed, 2);
        d.handle_overrun(&mut out);
        assert_eq!(out, [ProcItem::Overrun]);
    }
}
