//! Turning received proc connector datagrams into typed items, with trust, filtering and loss accounting.
//!
//! [`ProcDecoder`] takes each datagram with its sender address and appends [`ProcItem`]s: events, `Lost` records
//! computed from per-CPU `seq` gaps, and `Overrun` markers for `ENOBUFS`. It drops (and counts) datagrams that
//! did not come from the kernel, malformed ones, and events the userspace filter rejects, and it remembers the
//! subscription ack it was told to expect.

use crate::wire::{CbId, CnMsgs, EventData, EventMask, NlAddr, NlKind, NlMessages, ProcEvent};

use super::loss::{SeqObservation, SeqTracker};

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
    /// Exactly `count` messages were lost before the next item (from per-CPU `seq` gaps).
    Lost {
        /// Messages lost.
        count: u64,
    },
    /// A subscription ack (`PROC_EVENT_NONE`): some socket, maybe another process's, subscribed or unsubscribed.
    /// Every unfiltered listener sees every ack; they take part in the `seq` numbering like events.
    Ack {
        /// `cn_msg.seq`.
        seq: u32,
        /// The CPU that sent it.
        cpu: u32,
        /// The errno it carries (0 for success).
        err: u32,
    },
    /// The kernel reported an overrun (`ENOBUFS`): messages were dropped. On an unfiltered stream the exact count
    /// follows as `Lost` once the gaps are seen; on a kernel-filtered stream it cannot be known.
    Overrun,
}

/// Counters of everything the decoder saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Datagrams handled.
    pub datagrams: u64,
    /// Events delivered.
    pub events: u64,
    /// Events dropped by the userspace filter.
    pub filtered: u64,
    /// Subscription acks seen (ours and other processes').
    pub acks: u64,
    /// Messages lost, from per-CPU `seq` gaps.
    pub lost: u64,
    /// `ENOBUFS` reports.
    pub overruns: u64,
    /// Datagrams dropped because they did not come from the kernel (sender port id not 0).
    pub rejected: u64,
    /// Datagrams or messages that did not decode.
    pub malformed: u64,
    /// Connector messages for another id than the proc connector's.
    pub foreign: u64,
}

/// The sans-IO proc event decoder shared by the blocking and async drivers.
#[derive(Debug, Clone)]
pub struct ProcDecoder {
    filter: EventMask,
    count_gaps: bool,
    tracker: SeqTracker,
    expected_ack: Option<u32>,
    ack_err: Option<u32>,
    stats: Stats,
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
            tracker: SeqTracker::new(),
            expected_ack: None,
            ack_err: None,
            stats: Stats::default(),
        }
    }

    /// Starts watching for the subscription ack whose `ack` field is `ack` (the request's `ack + 1`).
    pub fn expect_ack(&mut self, ack: u32) {
        self.expected_ack = Some(ack);
        self.ack_err = None;
    }

    /// The errno of the expected ack, once it has arrived (0 is success).
    pub fn ack_result(&self) -> Option<u32> {
        self.ack_err
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Records an `ENOBUFS` from the socket.
    pub fn handle_overrun(&mut self, out: &mut Vec<ProcItem>) {
        self.stats.overruns += 1;
        out.push(ProcItem::Overrun);
    }

    /// Decodes one datagram received from `from`, appending what it holds to `out`.
    pub fn handle(&mut self, from: NlAddr, datagram: &[u8], out: &mut Vec<ProcItem>) {
        self.stats.datagrams += 1;
        if from.port != 0 {
            self.stats.rejected += 1;
            return;
        }
        for msg in NlMessages::new(datagram) {
            let Ok(msg) = msg else {
                self.stats.malformed += 1;
                return;
            };
            match msg.kind() {
                NlKind::Data(_) => {}
                NlKind::Overrun => self.handle_overrun(out),
                NlKind::Noop | NlKind::Error(_) => continue,
            }
            for cn in CnMsgs::new(msg.payload()) {
                let Ok(cn) = cn else {
                    self.stats.malformed += 1;
                    break;
                };
                if cn.id() != CbId::PROC {
                    self.stats.foreign += 1;
                    continue;
                }
                match ProcEvent::parse(cn.data()) {
                    Ok(ev) => self.event(cn.seq(), cn.ack(), ev, out),
                    Err(_) => self.stats.malformed += 1,
                }
            }
        }
    }

    fn event(&mut self, seq: u32, ack: u32, ev: ProcEvent, out: &mut Vec<ProcItem>) {
        if self.count_gaps {
            if let SeqObservation::Gap { lost } = self.tracker.observe(ev.cpu, seq) {
                self.stats.lost += u64::from(lost);
                out.push(ProcItem::Lost { count: u64::from(lost) });
            }
        }
        if let EventData::Ack { err } = ev.data {
            self.stats.acks += 1;
            if self.expected_ack == Some(ack) {
                self.ack_err = Some(err);
            }
            out.push(ProcItem::Ack { seq, cpu: ev.cpu, err });
            return;
        }
        let exit_code = match ev.data {
            EventData::Exit { exit_code, .. } => exit_code,
            _ => 0,
        };
        if !self.filter.admits(ev.data.what(), exit_code) {
            self.stats.filtered += 1;
            return;
        }
        self.stats.events += 1;
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
        let lost: Vec<_> =
            out.iter().filter_map(|i| if let ProcItem::Lost { count } = i { Some(*count) } else { None }).collect();
        assert_eq!(lost, [3]);
        assert_eq!(out.len(), 6);
        assert!(matches!(out[3], ProcItem::Lost { count: 3 }), "the Lost record comes before the event after the gap");
        assert_eq!(d.stats().lost, 3);
    }

    #[test]
    fn spoofed_sender_is_rejected() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        let mut out = Vec::new();
        d.handle(NlAddr { port: 4242, groups: 1 }, &proc_msg(1, 0, 0, fork(5)), &mut out);
        assert!(out.is_empty());
        assert_eq!(d.stats().rejected, 1);
    }

    #[test]
    fn ack_matched_on_ack_not_seq() {
        let mut d = ProcDecoder::new(EventMask::ALL, true);
        d.expect_ack(0x55667789);
        let mut out = Vec::new();
        d.handle(NlAddr::KERNEL, &proc_msg(7, 0x1234, 0, EventData::Ack { err: 0 }), &mut out);
        assert_eq!(d.ack_result(), None, "another process's ack");
        d.handle(NlAddr::KERNEL, &proc_msg(8, 0x55667789, 0, EventData::Ack { err: 0 }), &mut out);
        assert_eq!(d.ack_result(), Some(0));
        assert_eq!(out, [ProcItem::Ack { seq: 7, cpu: 0, err: 0 }, ProcItem::Ack { seq: 8, cpu: 0, err: 0 }]);
        assert_eq!(d.stats().acks, 2);
    }

    #[test]
    fn userspace_filter_still_counts_gaps() {
        let mut d = ProcDecoder::new(EventMask::NONZERO_EXIT, true);
        let mut out = Vec::new();
        d.handle(NlAddr::KERNEL, &proc_msg(1, 0, 0, exit(0)), &mut out);
        d.handle(NlAddr::KERNEL, &proc_msg(2, 0, 0, fork(3)), &mut out);
        d.handle(NlAddr::KERNEL, &proc_msg(4, 0, 0, exit(256)), &mut out);
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0], ProcItem::Lost { count: 1 }));
        assert!(matches!(out[1], ProcItem::Event(Event { seq: 4, data: EventData::Exit { exit_code: 256, .. }, .. })));
        assert_eq!(d.stats().filtered, 2);
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
        assert_eq!(d.stats().malformed, 2);
        d.handle_overrun(&mut out);
        assert_eq!(out, [ProcItem::Overrun]);
    }
}
