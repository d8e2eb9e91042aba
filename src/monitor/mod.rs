//! The process-event monitor behind `cnlink proc`: a receive thread ([`pipeline`]) feeding the main thread, which
//! keeps the process cache ([`enrich`]), filters ([`filter`]), formats ([`human`], [`json`]) and counts
//! ([`stats`]).

pub(crate) mod enrich;
pub(crate) mod filter;
pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod pipeline;
pub(crate) mod procfs;
pub(crate) mod stats;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnlink::proc::{Event, ProcEvents, ProcItem, ProcOptions};
use cnlink::wire::{comm_str, EventData, EventMask};

use crate::cmd::Format;
use enrich::Cache;
use filter::{ProcFilter, Selection};
use human::{Columns, Human, NameStyle};
use json::{Extra, JsonWriter, LostCause};
use pipeline::{Msg, Pipeline};
use stats::{Stats, Summary};

/// Everything `cnlink proc` was asked to do.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) selection: Selection,
    pub(crate) format: Format,
    pub(crate) enrich: bool,
    pub(crate) style: NameStyle,
    pub(crate) columns: Columns,
    pub(crate) line_buffered: bool,
    pub(crate) quiet: bool,
    pub(crate) stats: bool,
    pub(crate) duration: Option<Duration>,
    pub(crate) filter: ProcFilter,
    pub(crate) rcvbuf: usize,
    pub(crate) batch_latency: Duration,
    pub(crate) queue: usize,
    pub(crate) cache_max: usize,
    pub(crate) kernel_filter: bool,
    pub(crate) ack_timeout: Duration,
}

/// The events the cache needs to stay right: creation (inheritance, start times), exec (names), exit (forget),
/// comm and uid changes.
const TRACKING: EventMask = EventMask(
    EventMask::FORK.0 | EventMask::EXEC.0 | EventMask::EXIT.0 | EventMask::COMM.0 | EventMask::UID.0 | EventMask::SID.0,
);

/// How the cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheMode {
    /// Kept up to date by the events (a snapshot at start when enriching).
    Tracked,
    /// Only events of live processes are shown (exec, uid, ...): read `/proc` for each, keep nothing.
    Transient,
}

impl Config {
    fn cache_mode(&self) -> CacheMode {
        let lifelong = EventMask::FORK.0 | EventMask::EXIT.0 | EventMask::NONZERO_EXIT.0 | EventMask::COREDUMP.0;
        if !self.enrich || self.selection.mask.0 & lifelong != 0 || self.filter.active() {
            CacheMode::Tracked
        } else {
            CacheMode::Transient
        }
    }

    /// The events to ask the kernel for: those shown, plus those the cache and the filters need.
    fn kernel_mask(&self) -> EventMask {
        let mut m = self.selection.mask;
        if self.enrich && self.cache_mode() == CacheMode::Tracked {
            m |= TRACKING;
        }
        if self.filter.tracks_descendants() {
            m |= EventMask::FORK | EventMask::EXIT;
        }
        m
    }
}

struct Monitor {
    selection: Selection,
    mode: CacheMode,
    cache: Cache,
    filter: ProcFilter,
    stats: Stats,
    human: Option<Human>,
    w: JsonWriter,
    quiet: bool,
    /// Kernel-filtered: losses come from the socket's drop counter.
    drops: Option<(u32, u64)>,
}

/// Runs the monitor until Ctrl-C, SIGTERM, the duration, or a closed stdout.
pub(crate) fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    let opts = ProcOptions {
        events: cfg.kernel_mask(),
        recv_buffer: cfg.rcvbuf,
        ack_timeout: cfg.ack_timeout,
        batch: 256,
        kernel_filter: cfg.kernel_filter,
    };
    let events = ProcEvents::subscribe(opts).context("cannot subscribe to process events")?;
    let kernel_filtered = events.kernel_filtered();
    let port = events.socket().port_id().context("reading the socket's port id")?;

    let mode = cfg.cache_mode();
    let wants = procfs::Wants { uids: true, cgroup: true };
    let mut cache = Cache::new(cfg.cache_max, cfg.enrich, wants);
    if mode == CacheMode::Tracked {
        cache.snapshot();
    }
    let mut filter = cfg.filter;
    filter.start(&cache);
    let mut mon = Monitor {
        selection: cfg.selection,
        mode,
        cache,
        filter,
        stats: Stats { per_name: cfg.stats && cfg.format == Format::Text, ..Default::default() },
        human: (cfg.format == Format::Text).then(|| Human::new(cfg.style, cfg.columns)),
        w: JsonWriter::new(),
        quiet: cfg.quiet,
        drops: kernel_filtered.then(|| (port, procfs_drops(port).unwrap_or(0))),
    };

    let mut out = std::io::stdout().lock();
    if let (Some(h), false) = (&mon.human, cfg.quiet) {
        let mut header = Vec::new();
        h.header(&mut header);
        out.write_all(&header)?;
        out.flush()?;
    }
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    let mut pipe = Pipeline::spawn(events, cfg.batch_latency, cfg.queue.max(1024), stop.clone())
        .context("starting the receive thread")?;

    let mut failure = None;
    let result = loop {
        if stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
        let wait = deadline.map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()));
        match pipe.rx.recv_timeout(wait.min(Duration::from_millis(200))) {
            Ok(msg) => {
                if let Err(e) = mon.message(msg, &pipe, &mut failure, cfg.line_buffered, &mut out) {
                    break Err(e);
                }
                if failure.is_some() {
                    break Ok(());
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    let events = pipe.stop();
    if result.is_ok() {
        // What was received before the stop is still shown.
        while let Ok(msg) = pipe.rx.try_recv() {
            mon.message(msg, &pipe, &mut failure, cfg.line_buffered, &mut out)?;
        }
        mon.final_drops();
        mon.flush(&mut out)?;
    }
    result?;
    if let Some(e) = failure {
        return Err(anyhow::Error::new(e).context("receiving process events failed"));
    }
    if cfg.stats {
        let ps = events.as_ref().map(|e| e.stats()).unwrap_or_default();
        let summary = Summary {
            stats: &mon.stats,
            elapsed: started.elapsed(),
            datagrams: ps.datagrams,
            malformed: ps.malformed,
            rejected: ps.rejected,
            kernel_filtered,
            cache_evicted: mon.cache.evicted,
            proc_read_failures: mon.cache.read_failures(),
        };
        match cfg.format {
            Format::Text => summary.text(&mut out)?,
            Format::Json => {
                mon.w.clear();
                summary.json(&mut mon.w);
                out.write_all(mon.w.bytes())?;
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// This socket's `Drops` count in `/proc/net/netlink` (columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops).
fn procfs_drops(port: u32) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netlink").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_ascii_whitespace().collect();
        (f.get(1) == Some(&"11") && f.get(2).and_then(|p| p.parse().ok()) == Some(port))
            .then(|| f.get(8)?.parse().ok())?
    })
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Monitor {
    fn message(
        &mut self,
        msg: Msg,
        pipe: &Pipeline,
        failure: &mut Option<cnlink::Error>,
        line_buffered: bool,
        out: &mut impl Write,
    ) -> std::io::Result<()> {
        match msg {
            Msg::Items(batch) => {
                for item in &batch {
                    self.item(item);
                    if line_buffered && !self.w.bytes().is_empty() {
                        self.flush(out)?;
                    }
                }
                pipe.done(batch);
            }
            Msg::QueueLost(n) => self.lost(n, LostCause::Queue),
            Msg::Failed(e) => *failure = Some(e),
        }
        self.flush(out)
    }

    fn flush(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.w.len() > 0 {
            out.write_all(self.w.bytes())?;
            self.w.clear();
        }
        out.flush()
    }

    fn lost(&mut self, count: u64, cause: LostCause) {
        match cause {
            LostCause::SeqGap => self.stats.lost_seq += count,
            LostCause::KernelDrops => self.stats.lost_drops += count,
            LostCause::Queue => self.stats.lost_queue += count,
        }
        if self.quiet || count == 0 {
            return;
        }
        let now = monotonic_ns();
        match &self.human {
            Some(h) => {
                h.lost(self.w.buf_mut(), count, cause, now);
            }
            None => json::lost(&mut self.w, count, cause, now),
        }
    }

    /// Kernel-filtered subscriptions: turn the socket's drop counter into `lost` records.
    fn check_drops(&mut self) {
        let Some((port, seen)) = self.drops else { return };
        if let Some(now) = procfs_drops(port) {
            if now > seen {
                self.drops = Some((port, now));
                self.lost(now - seen, LostCause::KernelDrops);
            }
        }
    }

    fn final_drops(&mut self) {
        self.check_drops();
    }

    fn item(&mut self, item: &ProcItem) {
        match item {
            ProcItem::Event(ev) => self.event(ev),
            ProcItem::Lost { count } => self.lost(*count, LostCause::SeqGap),
            ProcItem::Overrun => {
                self.stats.overruns += 1;
                self.check_drops();
            }
            ProcItem::Ack { .. } => self.stats.acks += 1,
            _ => {}
        }
    }

    fn event(&mut self, ev: &Event) {
        let kind = stats::kind_index(&ev.data);
        self.stats.received[kind] += 1;
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
        let Monitor { cache, filter, stats, human, w, quiet, .. } = self;
        let info = cache.get(subject);
        if !filter.matches(&ev.data, info) {
            return;
        }
        stats.shown(&ev.data, info.map(|i| &i.comm));
        if *quiet {
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
    use super::*;

    fn config(events: &str, enrich: bool, filter: ProcFilter) -> Config {
        Config {
            selection: Selection::parse(events).unwrap(),
            format: Format::Json,
            enrich,
            style: NameStyle::default(),
            columns: Columns::default(),
            line_buffered: false,
            quiet: false,
            stats: false,
            duration: None,
            filter,
            rcvbuf: 0,
            batch_latency: Duration::ZERO,
            queue: 1024,
            cache_max: 1024,
            kernel_filter: true,
            ack_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_kernel_is_asked_for_what_is_shown_and_what_the_cache_needs() {
        let none = ProcFilter::default;
        let all = config("all", true, none());
        assert_eq!((all.kernel_mask(), all.cache_mode()), (EventMask::ALL, CacheMode::Tracked));
        // Exec lines of live processes need no tracking: only execs reach us.
        let exec = config("exec", true, none());
        assert_eq!((exec.kernel_mask(), exec.cache_mode()), (EventMask::EXEC, CacheMode::Transient));
        // Exit lines need the cache: it follows processes from their fork.
        let exit = config("exit", true, none());
        assert_eq!(exit.kernel_mask(), TRACKING | EventMask::EXIT);
        assert_eq!(exit.cache_mode(), CacheMode::Tracked);
        // Without /proc reads, only the shown events.
        let nz = config("nonzero-exit", false, none());
        assert_eq!(nz.kernel_mask(), EventMask::NONZERO_EXIT);
        // Descendants are followed through forks and exits.
        let desc = config("exec", false, ProcFilter::new(&[1], true, &[], &[], None));
        assert_eq!(desc.kernel_mask(), EventMask::EXEC | EventMask::FORK | EventMask::EXIT);
    }

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
            drops: None,
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
        // Forgotten after the exit.
        assert!(m.cache.get(50).is_none());
        assert_eq!(m.stats.received[stats::kind_index(&exit)], 1);
    }

    #[test]
    fn losses_are_shown_and_counted() {
        let mut m = monitor("all", ProcFilter::default());
        m.item(&ProcItem::Lost { count: 9 });
        let v: serde_json::Value = serde_json::from_slice(m.w.bytes()).unwrap();
        assert_eq!(
            (v["event"].as_str(), v["count"].as_u64(), v["cause"].as_str()),
            (Some("lost"), Some(9), Some("seq_gap"))
        );
        assert_eq!(m.stats.lost(), 9);
    }

    #[test]
    fn filters_follow_descendants_through_the_monitor() {
        let mut m = monitor("exec", ProcFilter::new(&[100], true, &[], &[], None));
        feed(&mut m, 1, EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 101, child_tgid: 101 });
        assert_eq!(feed(&mut m, 2, EventData::Exec { process_pid: 101, process_tgid: 101 }).len(), 1);
        assert!(feed(&mut m, 3, EventData::Exec { process_pid: 7, process_tgid: 7 }).is_empty());
    }

    #[test]
    fn drop_counter_of_a_missing_socket_is_none() {
        assert_eq!(procfs_drops(u32::MAX - 7), None);
    }
}
