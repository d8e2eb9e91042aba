//! `cnlink proc` on the process model (`cnlink_procmon::Monitor`): the library receives, enriches and filters
//! (the tree filters too: `cnlink_procmon::TreeFilter`); this module runs it until told to stop, hands each
//! item to the outputs ([`output`]: text in forkstat's columns ([`human`]), the tree view ([`tree`]), the
//! native JSON ([`json`]), ECS documents (`cnlink_procmon::ecs`), and room for others), keeps the `-S`
//! statistics ([`stats`]), and reports to the service manager and the metrics endpoint.

pub(crate) mod clock;
pub(crate) mod dispatch;
pub(crate) mod human;
pub(crate) mod json;
pub(crate) mod output;
pub(crate) mod stats;
#[cfg(test)]
pub(crate) mod testkit;
pub(crate) mod tree;
pub(crate) mod tty;

use std::cell::RefCell;
use std::io::Write;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cnlink_procmon::{Monitor, MonitorBuilder, ProcFilter, RecordFilter, Selection, TableConfig};

use crate::cmd::proc::ProcFormat;
use crate::service::daemon::Daemon;
use crate::service::reports;
use crate::sink::output::{upstream_counts, SinkOutput};
use crate::sink::stage::SinkStage;
use dispatch::Dispatch;
use human::{Columns, NameStyle, TextEnv};
use json::JsonWriter;
use output::{EcsHost, Outputs, TerminalStyle, View};
use stats::{Names, Summary};

/// Everything `cnlink proc` was asked to do.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) selection: Selection,
    pub(crate) format: ProcFormat,
    /// `--tree` (with the text format).
    pub(crate) tree: bool,
    /// Whether `filters` holds the tree filters, which need the process table from `/proc`.
    pub(crate) tree_filtered: bool,
    pub(crate) enrich: bool,
    pub(crate) style: NameStyle,
    pub(crate) columns: Columns,
    pub(crate) line_buffered: bool,
    pub(crate) quiet: bool,
    pub(crate) stats: bool,
    pub(crate) duration: Option<Duration>,
    /// The filters run on every record, in order (`--pid`, `--name`, `--uid`, `-p` first, then the tree
    /// filters).
    pub(crate) filters: Vec<Box<dyn RecordFilter>>,
    pub(crate) rcvbuf: usize,
    pub(crate) batch_latency: Duration,
    pub(crate) queue: usize,
    /// Processes the table keeps at most.
    pub(crate) cache_max: usize,
    /// Ancestors on exec and exit records.
    pub(crate) ancestry_depth: usize,
    pub(crate) kernel_filter: bool,
    pub(crate) ack_timeout: Duration,
    /// Serve Prometheus metrics here.
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Record what the monitor receives and reads.
    pub(crate) record: Option<RecordTo>,
    /// Run from a recording instead of the kernel and `/proc`.
    pub(crate) replay: Option<crate::cmd::replay::Replay>,
    /// Ship every event to NATS JetStream (`--sink`) instead of printing it.
    pub(crate) sink: Option<crate::sink::args::SinkArgs>,
}

/// Where and how to record.
#[derive(Debug)]
pub(crate) struct RecordTo {
    /// The file (the first of a rotated set is named after it).
    pub(crate) path: std::path::PathBuf,
    /// Rotation.
    pub(crate) rotation: crate::record::RecordArgs,
    /// The command named in the session record.
    pub(crate) command: &'static str,
}

/// Events that may wait for the recording thread before the monitor's recorder counts misses.
const RECORD_QUEUE: usize = 1 << 16;

impl Config {
    /// The filter list with the classic process filters first.
    pub(crate) fn process_filter(f: ProcFilter) -> Vec<Box<dyn RecordFilter>> {
        if f.is_empty() {
            Vec::new()
        } else {
            vec![Box::new(f)]
        }
    }

    /// The library's monitor, as configured.
    fn builder(&mut self) -> MonitorBuilder {
        let table = TableConfig { max_processes: self.cache_max.max(64), ..TableConfig::default() };
        let mut b = Monitor::builder()
            .events(self.selection)
            .enrich(self.enrich)
            .table(table)
            .ancestry_depth(self.ancestry_depth)
            .recv_buffer(self.rcvbuf)
            .ack_timeout(self.ack_timeout)
            .kernel_filter(self.kernel_filter)
            .batch_latency(self.batch_latency)
            .queue(self.queue.max(1024));
        for f in self.filters.drain(..) {
            b = b.filter_boxed(f);
        }
        b
    }
}

/// Runs the monitor until Ctrl-C, SIGTERM, the duration, or a closed stdout.
pub(crate) fn run(mut cfg: Config) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    if cfg.tree_filtered && !cfg.enrich {
        bail!(
            "--descendants-of, --exclude-descendants-of, --container and --unit need the process table from /proc: \
             not with --no-enrich, nor on a recording made with it"
        );
    }
    let sinking = cfg.sink.is_some();
    let (mut daemon, metrics) = Daemon::start(cfg.metrics, |m| (m.proc(), sinking.then(|| m.sink())))?;
    let (metrics, sink_metrics) = metrics.map_or((None, None), |(p, s)| (Some(p), s));
    // A spool that cannot be opened stops here, before subscribing.
    let sink = match &cfg.sink {
        Some(args) => SinkStage::start(args)?.map(|stage| Rc::new(RefCell::new(stage))),
        None => None,
    };
    let mut builder = cfg.builder();
    let replay = cfg.replay.take();
    let live = replay.is_none();
    let mut host_info = None;
    let mut host_name = None;
    // The writers' clock: moved by the main loop live, fixed by the recording in a replay.
    let clock = match &replay {
        Some(r) => r.clock.clone(),
        None => clock::LocalClock::starting(clock::read()),
    }
    .shared();
    if let Some(r) = replay {
        host_name = r.host_name.clone();
        builder = r.setup(builder);
    } else if cfg.record.is_some() {
        let host = cnlink_procmon::HostIdentity::read().context("reading the host identity")?;
        host_info = Some(host.clone());
        builder = builder.host(host);
    }
    let mut recorder = None;
    if cfg.record.is_some() {
        let (handle, rec) = cnlink_procmon::recorder(RECORD_QUEUE);
        builder = builder.recorder(handle);
        recorder = Some(rec);
    }
    // Subscribes, then seeds the process table from /proc, then starts the receive thread.
    let mut mon = builder.build()?;
    let kernel_filtered = mon.kernel_filtered();
    let rcvbuf = mon.recv_buffer();
    let recording = match (&cfg.record, recorder) {
        (Some(to), Some(rec)) => {
            let steps = clock.borrow().steps().to_vec();
            Some(crate::record::monitor(to, &mon, cfg.enrich, host_info, &steps, rec)?)
        }
        _ => None,
    };

    let mut outputs = Outputs::default();
    // With a sink, events go there instead of stdout.
    if let Some(stage) = &sink {
        outputs.push(Box::new(SinkOutput::new(stage.clone(), clock.clone())));
    } else if !cfg.quiet {
        let look = TerminalStyle { style: cfg.style, columns: cfg.columns, line_buffered: cfg.line_buffered };
        let view = match (cfg.format, cfg.tree) {
            (ProcFormat::Text, false) => View::Text,
            (ProcFormat::Text, true) => View::Tree,
            (ProcFormat::Json, _) => View::Json,
            (ProcFormat::Ecs, _) => {
                let name =
                    host_name.unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned());
                View::Ecs(EcsHost { identity: mon.table().host().clone(), name })
            }
        };
        outputs.push(output::terminal(view, look, TextEnv::live(clock.clone()), std::io::stdout())?);
    }
    let names = (cfg.stats && cfg.format == ProcFormat::Text).then(Names::default);
    let mut glue = Dispatch { outputs, names };
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    // The kernel acknowledged the subscription and the receive thread runs.
    daemon.ready();

    let mut items = Vec::new();
    // Before each batch is printed: a clock step applies from the reading before, which every event printed
    // so far came before.
    let tick_clock = || {
        if !live {
            return;
        }
        let step = clock.borrow_mut().update(clock::read());
        if let (Some(step), Some(r)) = (step, &recording) {
            r.clock(step);
        }
    };
    let result: anyhow::Result<()> = loop {
        if stop.load(Ordering::Acquire) || deadline.is_some_and(|d| Instant::now() >= d) || mon.is_finished() {
            break Ok(());
        }
        let now = Instant::now();
        if let Some(stage) = &sink {
            stage.borrow_mut().tick(now, || upstream_counts(&mon.counters()));
        }
        if daemon.tick(now) {
            if let Some(stage) = &sink {
                daemon.set_status_extra(&stage.borrow_mut().report(now, sink_metrics.as_ref()));
            }
            reports::proc(&mut daemon, metrics.as_ref(), &mon.counters());
        }
        let wait = deadline.map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()));
        items.clear();
        if let Err(e) = mon.recv(&mut items, Some(wait.min(Duration::from_millis(200)))) {
            // What came before the failure is still shown.
            tick_clock();
            glue.items(&items, Some(mon.table()))?;
            break Err(e.into());
        }
        tick_clock();
        glue.items(&items, Some(mon.table()))?;
    };
    daemon.stopping();
    mon.stop();
    if result.is_ok() {
        // What was received before the stop is still shown.
        while !mon.is_finished() {
            items.clear();
            mon.recv(&mut items, Some(Duration::ZERO))?;
            tick_clock();
            glue.items(&items, Some(mon.table()))?;
        }
    }
    if let Some(stage) = sink {
        // The outputs hold the other reference to the stage.
        drop(glue.outputs);
        if let Ok(stage) = Rc::try_unwrap(stage) {
            stage.into_inner().finish(&upstream_counts(&mon.counters()));
        }
    }
    result?;
    if cfg.stats {
        let counters = mon.counters();
        let summary = Summary {
            counters: &counters,
            names: glue.names.as_ref(),
            elapsed: started.elapsed(),
            kernel_filtered,
            rcvbuf,
        };
        let mut out = std::io::stdout().lock();
        match cfg.format {
            ProcFormat::Text => summary.text(&mut out)?,
            // ECS too: the native JSON's stats object (docs/ecs.md).
            ProcFormat::Json | ProcFormat::Ecs => {
                let mut w = JsonWriter::new();
                summary.json(&mut w);
                out.write_all(w.bytes())?;
            }
        }
        out.flush()?;
    }
    // The monitor's end of the recorder goes with it: the recording thread then writes what is left.
    drop(mon);
    if let Some(rec) = recording {
        rec.finish_and_report()?;
    }
    Ok(ExitCode::SUCCESS)
}
