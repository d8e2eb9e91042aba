//! The process-event monitor behind `cnlink proc`: a receive thread ([`pipeline`]) feeding the main thread, which
//! handles each item ([`dispatch`]): it keeps the process cache ([`enrich`]), filters ([`filter`]), formats
//! ([`human`], [`json`]) and counts ([`stats`]).

pub(crate) mod dispatch;
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
use cnlink::proc::{ProcEvents, ProcOptions};
use cnlink::wire::EventMask;

use crate::cmd::Format;
use crate::service::daemon::Daemon;
use crate::service::reports;
use crate::sink::stage::SinkStage;
use cnlink_sink::UpstreamCounts;
use dispatch::Monitor;
use enrich::Cache;
use filter::{ProcFilter, Selection};
use human::{Columns, Human, NameStyle};
use json::JsonWriter;
use pipeline::Pipeline;
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
    /// Serve Prometheus metrics here.
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

/// The events the cache needs to stay right: creation (inheritance, start times), exec (names), exit (forget),
/// comm and uid changes.
const TRACKING: EventMask = EventMask(
    EventMask::FORK.0 | EventMask::EXEC.0 | EventMask::EXIT.0 | EventMask::COMM.0 | EventMask::UID.0 | EventMask::SID.0,
);

/// How the cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheMode {
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

/// Where the formatted lines go: stdout, or (with `--sink`) the sink, one JSON line per event.
enum Out<'a> {
    Stdout(std::io::StdoutLock<'a>),
    Sink(Box<SinkStage>, Vec<u8>),
}

impl Write for Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Stdout(out) => out.write(bytes),
            Out::Sink(_, pending) => {
                pending.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Stdout(out) => out.flush(),
            Out::Sink(sink, pending) => {
                let mut rest = &pending[..];
                while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                    let line = &rest[..end];
                    rest = &rest[end + 1..];
                    // Every line is `{"event":"KIND",...}`.
                    let kind = line
                        .strip_prefix(b"{\"event\":\"")
                        .and_then(|r| r.iter().position(|&b| b == b'"').map(|n| &r[..n]))
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .unwrap_or("unknown");
                    sink.submit(kind, line);
                }
                let used = pending.len() - rest.len();
                pending.drain(..used);
                sink.flush(Instant::now());
                Ok(())
            }
        }
    }
}

/// The monitor's counts a ledger record carries.
fn upstream(mon: &Monitor) -> UpstreamCounts {
    let s = &mon.stats;
    let mut per_cpu = Vec::new();
    for (&cpu, &n) in &s.lost_by_cpu {
        let cpu = cpu as usize;
        if cpu < 8192 {
            per_cpu.resize(per_cpu.len().max(cpu + 1), 0);
            per_cpu[cpu] += n;
        }
    }
    let attributed: u64 = per_cpu.iter().sum();
    UpstreamCounts {
        kernel_lost_per_cpu: per_cpu,
        kernel_lost_other: (s.lost_seq + s.lost_drops).saturating_sub(attributed),
        queue_lost: s.lost_queue,
        filtered: s.received.iter().sum::<u64>().saturating_sub(s.shown.iter().sum()),
    }
}

/// Runs the monitor until Ctrl-C, SIGTERM, the duration, or a closed stdout; with a sink, events go there
/// instead of stdout.
pub(crate) fn run(cfg: Config, sink: Option<SinkStage>) -> anyhow::Result<ExitCode> {
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
    let (mut daemon, metrics) = Daemon::start(cfg.metrics, |m| (m.proc(), m.sink()))?;
    let (metrics, sink_metrics) = metrics.map_or((None, None), |(p, s)| (Some(p), Some(s)));
    let events = ProcEvents::subscribe(opts).context("cannot subscribe to process events")?;
    let kernel_filtered = events.kernel_filtered();
    let rcvbuf = events.socket().recv_buffer().ok();

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
        kernel_filtered,
        own_pid: std::process::id() as i32,
    };

    let mut out = match sink {
        Some(sink) => Out::Sink(Box::new(sink), Vec::with_capacity(1 << 16)),
        None => Out::Stdout(std::io::stdout().lock()),
    };
    if let (Some(h), false, Out::Stdout(out)) = (&mon.human, cfg.quiet, &mut out) {
        let mut header = Vec::new();
        h.header(&mut header);
        out.write_all(&header)?;
        out.flush()?;
    }
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    let mut pipe = Pipeline::spawn(events, cfg.batch_latency, cfg.enrich, cfg.queue.max(1024), stop.clone())
        .context("starting the receive thread")?;
    // The kernel acknowledged the subscription (subscribe returned) and the receive thread runs.
    daemon.ready();

    let mut failure = None;
    let result = loop {
        if stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(());
        }
        let now = Instant::now();
        if let Out::Sink(sink, _) = &mut out {
            sink.tick(now, || upstream(&mon));
        }
        if daemon.tick(now) {
            if let Out::Sink(sink, _) = &mut out {
                let line = sink.report(now, sink_metrics.as_ref());
                daemon.set_status_extra(&line);
            }
            reports::proc(&mut daemon, metrics.as_ref(), &mon, &pipe);
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
    daemon.stopping();
    let events = pipe.stop();
    if result.is_ok() {
        // What was received before the stop is still shown.
        while let Ok(msg) = pipe.rx.try_recv() {
            mon.message(msg, &pipe, &mut failure, cfg.line_buffered, &mut out)?;
        }
        mon.flush(&mut out)?;
    }
    let out = match out {
        Out::Sink(sink, _) if result.is_ok() => {
            sink.finish(&upstream(&mon));
            Out::Stdout(std::io::stdout().lock())
        }
        out => out,
    };
    let mut out = out;
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
            rcvbuf,
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

pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
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
            metrics: None,
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
}
