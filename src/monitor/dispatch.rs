//! Handling each received item on the main thread: the cache before and after, the filters, the output.

use std::io::Write;

use cnlink::proc::{Event, Loss, ProcItem};
use cnlink::wire::{comm_str, EventData};

use super::enrich::Cache;
use super::filter::{ProcFilter, Selection};
use super::human::Human;
use super::json::{self, Extra, JsonWriter, LostCause};
use super::pipeline::{Msg, Pipeline};
use super::stats::{self, Stats};
use super::views::Views;
use super::{monotonic_ns, CacheMode};

/// The main thread's state.
pub(crate) struct Monitor {
    pub(crate) selection: Selection,
    pub(crate) mode: CacheMode,
    pub(crate) cache: Cache,
    pub(crate) filter: ProcFilter,
    pub(crate) stats: Stats,
    pub(crate) human: Option<Human>,
    pub(crate) w: JsonWriter,
    pub(crate) quiet: bool,
    /// Kernel-filtered: the library counts losses from the socket's drop counter, not from sequence gaps.
    pub(crate) kernel_filtered: bool,
    /// This process's pid: the monitor's own threads and their renaming are not reported.
    pub(crate) own_pid: i32,
    /// The views over the process table, when asked for.
    pub(crate) views: Option<Views>,
}

impl Monitor {
    pub(crate) fn message(
        &mut self,
        msg: Msg,
        pipe: &Pipeline,
        failure: &mut Option<cnlink::Error>,
        line_buffered: bool,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        match msg {
            Msg::Items(batch) => {
                self.items(&batch, line_buffered, out)?;
                pipe.done(batch);
            }
            Msg::QueueLost(n) => self.lost(Loss::Exact(n), LostCause::Queue),
            Msg::Failed(e) => *failure = Some(e),
        }
        self.flush(out)
    }

    /// Handles one batch from the receive thread: the time column's clock offset is brought up to date first
    /// (it moves across a suspend or a clock step).
    pub(crate) fn items(
        &mut self,
        batch: &[ProcItem],
        line_buffered: bool,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        if let Some(h) = &mut self.human {
            h.resync_clock();
        }
        if let Some(v) = &mut self.views {
            v.resync_clock();
        }
        for item in batch {
            self.item(item);
            if line_buffered && !self.w.bytes().is_empty() {
                self.flush(out)?;
            }
        }
        Ok(())
    }

    pub(crate) fn flush(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.w.len() > 0 {
            out.write_all(self.w.bytes())?;
            self.w.clear();
        }
        out.flush()
    }

    fn lost(&mut self, loss: Loss, cause: LostCause) {
        let count = loss.count().unwrap_or(0);
        match cause {
            LostCause::SeqGap => self.stats.lost_seq += count,
            LostCause::KernelDrops => self.stats.lost_drops += count,
            LostCause::Queue => self.stats.lost_queue += count,
        }
        self.stats.lost_inexact += u64::from(!loss.is_exact());
        if loss == Loss::Exact(0) {
            return;
        }
        if let Some(v) = &mut self.views {
            v.note_loss();
        }
        if self.quiet {
            return;
        }
        let now = monotonic_ns();
        if let Some(v) = &mut self.views {
            if v.lost(self.w.buf_mut(), loss, cause, now) {
                return;
            }
        }
        match &self.human {
            Some(h) => {
                h.lost(self.w.buf_mut(), loss, cause, now);
            }
            None => json::lost(&mut self.w, loss, cause, now),
        }
    }

    pub(crate) fn item(&mut self, item: &ProcItem) {
        match item {
            ProcItem::Event(ev) => {
                self.stats.charge_cpu(ev.cpu);
                self.event(ev)
            }
            ProcItem::Lost(loss) => {
                let cause = if self.kernel_filtered { LostCause::KernelDrops } else { LostCause::SeqGap };
                if cause == LostCause::SeqGap {
                    self.stats.lost_uncharged += loss.count().unwrap_or(0);
                }
                self.lost(*loss, cause)
            }
            ProcItem::Overrun => self.stats.overruns += 1,
            ProcItem::Ack { cpu, .. } => {
                self.stats.charge_cpu(*cpu);
                self.stats.acks += 1
            }
            _ => {}
        }
    }

    fn event(&mut self, ev: &Event) {
        if ev.data.subject().is_some_and(|(_, tgid)| tgid == self.own_pid) {
            self.stats.own += 1;
            return;
        }
        let kind = stats::kind_index(&ev.data);
        self.stats.received[kind] += 1;
        if let Some(v) = &mut self.views {
            v.follow(ev);
        }
        let show = self.selection.admits(&ev.data);
        let subject = ev.data.subject().map_or(0, |(_, tgid)| tgid);
        let transient = self.mode == CacheMode::Transient;
        // Before showing: what the event creates or replaces.
        match ev.data {
            EventData::Fork { parent_tgid, child_pid, child_tgid, .. } => {
                if !transient {
                    self.cache.on_fork(parent_tgid, child_pid, child_tgid, ev.timestamp_ns);
                }
                self.filter.on_fork(parent_tgid, child_pid, child_tgid);
            }
            EventData::Exec { process_tgid, .. } => self.cache.on_exec(process_tgid),
            _ if transient && show => self.cache.on_exec(subject),
            _ => {}
        }
        if show {
            self.show(ev, subject);
        }
        // After showing: what the event ends or changes.
        match ev.data {
            EventData::Exit { process_pid, process_tgid, .. } => {
                self.cache.on_exit(process_pid, process_tgid);
                self.filter.on_exit(process_pid, process_tgid);
            }
            EventData::Comm { process_pid, process_tgid, comm } => {
                self.cache.on_comm(process_pid, process_tgid, &comm_str(&comm));
            }
            EventData::Uid { process_tgid, ruid, euid, .. } => {
                self.cache.on_uid(process_tgid, ruid, euid);
            }
            EventData::Sid { process_tgid, .. } => self.cache.on_sid(process_tgid),
            _ => {}
        }
        if transient && show {
            self.cache.on_exit(subject, subject);
        }
        if let Some(v) = &mut self.views {
            v.done();
        }
    }

    /// Filters and writes one event.
    fn show(&mut self, ev: &Event, subject: i32) {
        if subject > 0 {
            self.cache.get_or_load(subject);
            if self.filter.by_pgrp() {
                if let Some(pgid) =
                    rustix::process::Pid::from_raw(subject).and_then(|p| rustix::process::getpgid(Some(p)).ok())
                {
                    self.cache.set_pgid(subject, pgid.as_raw_nonzero().get());
                }
            }
        }
        let Monitor { cache, filter, stats, human, w, quiet, views, .. } = self;
        let info = cache.get(subject);
        if !filter.matches(&ev.data, info) || views.as_ref().is_some_and(|v| !v.admits()) {
            return;
        }
        stats.shown(&ev.data, info.map(|i| &i.comm));
        if *quiet {
            return;
        }
        if views.as_mut().is_some_and(|v| v.write(w.buf_mut())) {
            return;
        }
        let mut x = Extra { info, ..Default::default() };
        match ev.data {
            EventData::Exit { process_pid, process_tgid, .. } => {
                x.lifetime_ns = cache.lifetime(process_pid, process_tgid, ev.timestamp_ns);
            }
            EventData::Comm { .. } => x.old_comm = info.map(|i| &*i.comm),
            EventData::Uid { .. } => x.old_uid = info.and_then(|i| i.uid),
            _ => {}
        }
        match human {
            Some(h) => {
                let parent = match ev.data {
                    EventData::Fork { parent_tgid, .. } => cache.get(parent_tgid),
                    _ => None,
                };
                h.event(w.buf_mut(), ev, x, parent);
            }
            None => json::event(w, ev, x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::procfs;
    use super::*;

    fn monitor(selection: &str, filter: ProcFilter) -> Monitor {
        Monitor {
            selection: Selection::parse(selection).unwrap(),
            mode: CacheMode::Tracked,
            cache: Cache::new(1024, false, procfs::Wants::default()),
            filter,
            stats: Stats::default(),
            human: None,
            w: JsonWriter::new(),
            quiet: false,
            kernel_filtered: false,
            own_pid: 4242,
            views: None,
        }
    }

    fn feed(m: &mut Monitor, ts: u64, data: EventData) -> Vec<serde_json::Value> {
        m.w.clear();
        m.item(&ProcItem::Event(Event { seq: 0, cpu: 0, timestamp_ns: ts, data }));
        m.w.bytes()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn comm(name: &str) -> [u8; 16] {
        let mut c = [0; 16];
        c[..name.len()].copy_from_slice(name.as_bytes());
        c
    }

    #[test]
    fn exits_are_named_and_timed_from_the_cache() {
        let mut m = monitor("exit,comm", ProcFilter::default());
        // Not shown (fork is not selected) but followed.
        assert!(feed(&mut m, 1_000, EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 50, child_tgid: 50 })
            .is_empty());
        let c = feed(&mut m, 1_500, EventData::Comm { process_pid: 50, process_tgid: 50, comm: comm("worker") });
        assert_eq!(c[0]["comm"], "worker");
        let exit = EventData::Exit {
            process_pid: 50,
            process_tgid: 50,
            exit_code: 256,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
        };
        let e = feed(&mut m, 4_000, exit);
        assert_eq!(
            (e[0]["comm"].as_str(), e[0]["lifetime_ns"].as_u64(), e[0]["code"].as_u64()),
            (Some("worker"), Some(3_000), Some(1))
        );
        // A thread's exit reported after its leader's still has the name.
        let late = EventData::Exit {
            process_pid: 51,
            process_tgid: 50,
            exit_code: 0,
            exit_signal: u32::MAX,
            parent_pid: 1,
            parent_tgid: 1,
        };
        assert_eq!(feed(&mut m, 4_100, late)[0]["comm"], "worker");
        assert_eq!(m.stats.received[stats::kind_index(&exit)], 2);
    }

    #[test]
    fn the_monitors_own_threads_are_not_shown() {
        let mut m = monitor("all", ProcFilter::default());
        let thread = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 4243, child_tgid: 4242 };
        assert!(feed(&mut m, 1, thread).is_empty());
        let rename = EventData::Comm { process_pid: 4243, process_tgid: 4242, comm: comm("cnlink-recv") };
        assert!(feed(&mut m, 2, rename).is_empty());
        assert_eq!(m.stats.own, 2);
        assert_eq!(feed(&mut m, 3, EventData::Exec { process_pid: 7, process_tgid: 7 }).len(), 1);
    }

    #[test]
    fn losses_are_shown_and_counted() {
        let mut m = monitor("all", ProcFilter::default());
        m.item(&ProcItem::Lost(Loss::Exact(9)));
        let v: serde_json::Value = serde_json::from_slice(m.w.bytes()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64(), v["exact"].as_bool(), v["cause"].as_str()),
            (Some("lost"), Some(9), Some(true), Some("seq_gap"))
        );
        assert_eq!(m.stats.lost(), 9);
        assert_eq!(m.stats.lost_inexact, 0);
    }

    #[test]
    fn a_loss_of_unknown_size_is_shown() {
        let mut m = monitor("all", ProcFilter::default());
        m.kernel_filtered = true;
        m.item(&ProcItem::Overrun);
        m.item(&ProcItem::Lost(Loss::Unknown));
        let v: serde_json::Value = serde_json::from_slice(m.w.bytes()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["exact"].as_bool(), v["cause"].as_str()),
            (Some("lost"), Some(false), Some("socket_drops"))
        );
        assert!(v["count"].is_null());
        m.w.clear();
        m.item(&ProcItem::Lost(Loss::AtLeast(4)));
        let v: serde_json::Value = serde_json::from_slice(m.w.bytes()).unwrap();
        assert_eq!((v["count"].as_u64(), v["exact"].as_bool()), (Some(4), Some(false)));
        assert_eq!((m.stats.lost(), m.stats.lost_inexact, m.stats.overruns), (4, 2, 1));

        let mut h = monitor("all", ProcFilter::default());
        h.human = Some(Human::new(Default::default(), Default::default()));
        h.item(&ProcItem::Lost(Loss::Unknown));
        h.item(&ProcItem::Lost(Loss::AtLeast(3)));
        let text = String::from_utf8_lossy(h.w.bytes()).into_owned();
        assert!(text.contains(" ? events lost (seq_gap)"), "{text}");
        assert!(text.contains(" at least 3 events lost (seq_gap)"), "{text}");
    }

    /// A fake monotonic-to-local offset: what a suspend or a clock step changes.
    static OFFSET_NS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

    #[test]
    fn the_time_column_follows_clock_jumps_between_batches() {
        use super::super::human::{Columns, NameStyle};
        OFFSET_NS.store(0, std::sync::atomic::Ordering::Relaxed);
        let clock = || i128::from(OFFSET_NS.load(std::sync::atomic::Ordering::Relaxed));
        let mut m = monitor("exec", ProcFilter::default());
        m.human = Some(Human::with_clock(NameStyle::default(), Columns::default(), clock));
        // 10:00:00 on the monotonic clock.
        let ev = ProcItem::Event(Event {
            seq: 0,
            cpu: 0,
            timestamp_ns: 36_000_000_000_000,
            data: EventData::Exec { process_pid: 5, process_tgid: 5 },
        });
        let mut out = Vec::new();
        m.items(&[ev], false, &mut out).unwrap();
        m.flush(&mut out).unwrap();
        // The machine slept 1 h 30 min: the monotonic clock stood still, wall-clock time did not.
        OFFSET_NS.store(5_400_000_000_000, std::sync::atomic::Ordering::Relaxed);
        m.items(&[ev], false, &mut out).unwrap();
        m.flush(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let times: Vec<&str> = text.lines().map(|l| &l[..8]).collect();
        assert_eq!(times, ["10:00:00", "11:30:00"], "{text}");
    }

    #[test]
    fn filters_follow_descendants_through_the_monitor() {
        let mut m = monitor("exec", ProcFilter::new(&[100], true, &[], &[], None));
        feed(&mut m, 1, EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 101, child_tgid: 101 });
        assert_eq!(feed(&mut m, 2, EventData::Exec { process_pid: 101, process_tgid: 101 }).len(), 1);
        assert!(feed(&mut m, 3, EventData::Exec { process_pid: 7, process_tgid: 7 }).is_empty());
    }
}
