//! `storm`: the proc-event storm benchmark.
//!
//! ```text
//! cargo run --release -p cnlink-bench --bin storm -- [--children N] [--workers 2] \
//!     [--kind thread|fork|exec|all] [--nice 19] [--listeners cnlink,cnlink-record,example,cloop,forkstat,sink] \
//!     [--rounds 3] [--json PATH]
//! ```
//!
//! `cnlink-record` is `cnlink record FILE` with the same arguments as the `cnlink` listener (`cnlink proc --format
//! json`): its events are counted from `cnlink replay FILE --format json` after the run, and the replay's speed
//! (`--speed max` to `/dev/null`, JSON and text) is reported too.
//!
//! For each round and each listener in turn (the order rotates every round), it:
//! 1. starts the listener (at `nice -n NICE` if asked) with its output going to a file;
//! 2. waits until the listener provably receives proc events (its socket's queue grows when a
//!    marker child is forked while the listener is stopped);
//! 3. runs a storm of `N` children from `--workers` workers at normal priority, recording every
//!    child id;
//! 4. waits until the listener has drained its socket and gone quiet, stops it with SIGINT and
//!    reads its CPU time and peak RSS (`wait4`);
//! 5. matches the fork and exit events it printed against the created ids, counted per id as a
//!    multiset (pids are reused within a storm).
//!
//! Listeners run one at a time, each with its own storm of the same size, so that no listener
//! steals CPU from another; the rounds are interleaved so that a noisy moment of the shared machine
//! hits every listener alike, and the summary gives medians across rounds.

#![deny(unsafe_code)]

#[path = "../common.rs"]
mod common;
#[path = "../storm/mod.rs"]
mod storm;
#[path = "../summary.rs"]
mod summary;
#[path = "../sys.rs"]
mod sys;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use storm::count::{matched, multiset, Tally};
use storm::gen::{self, Kind};
use storm::listener;
use storm::parse::Format;
use storm::prepare;
use storm::report::{self, Medians, ReplaySpeed, RunResult};
use storm::sink;

/// Proc-event storm: events lost and CPU per event for each proc-connector listener.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Children created per storm (each listener gets its own storm of this size).
    #[arg(long, default_value_t = 100_000)]
    children: u64,
    /// Worker threads creating children in parallel.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// What each child is.
    #[arg(long, value_enum, default_value_t = Kind::Thread)]
    kind: Kind,
    /// Niceness of the listeners (the storm stays at the harness's priority).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    nice: i32,
    /// Listeners to run, in order (`sink` is `cnlink proc --sink` to a nats-server the harness starts, read back
    /// with `cnlink collect --audit`; it is not in the default list).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Format::Cnlink, Format::Example, Format::Cloop, Format::Forkstat])]
    listeners: Vec<Format>,
    /// Rounds; each runs every listener once.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Write the raw results (every run, the medians) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Add the medians to this summary file (the one kept in git, e.g. bench/summary/storm.json), under
    /// `--label`.
    #[arg(long, requires = "label")]
    summary: Option<PathBuf>,
    /// The label of this run in the summary file (an entry with the same label is replaced).
    #[arg(long)]
    label: Option<String>,
    /// Extra argument for `cnlink proc --format json` and `--sink` (repeatable), e.g. `--cnlink-arg=--latency=5ms`.
    #[arg(long = "cnlink-arg", allow_hyphen_values = true)]
    cnlink_args: Vec<String>,
    /// Do not run `cargo build` for cnlink and the example (use what is in the target dir).
    #[arg(long)]
    no_build: bool,
    /// Keep the listeners' output files (under `<target>/storm-runs/`).
    #[arg(long)]
    keep_output: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("storm: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
}

fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "pid_max": read_trim("/proc/sys/kernel/pid_max"),
        "rmem_default": read_trim("/proc/sys/net/core/rmem_default"),
    });
    println!("storm: {command}");
    let load_start = read_trim("/proc/loadavg");
    println!("load average at start: {load_start}");
    println!(
        "machine: nproc={} kernel={} pid_max={} net.core.rmem_default={}",
        machine["nproc"], machine["kernel"], machine["pid_max"], machine["rmem_default"]
    );
    println!(
        "storm: {} children x {} workers of kind {}, listeners at nice {}, {} rounds",
        args.children,
        args.workers,
        args.kind.name(),
        args.nice,
        args.rounds
    );

    let mut specs = Vec::new();
    let mut unavailable = serde_json::Map::new();
    for &format in &args.listeners {
        match prepare::prepare(format, !args.no_build, &args.cnlink_args) {
            Ok(spec) => specs.push(spec),
            Err(why) => {
                let name = format!("{format:?}").to_lowercase();
                println!("listener {name}: unavailable: {why}");
                unavailable.insert(name, why.into());
            }
        }
    }
    let out_dir = prepare::target_dir().join("storm-runs");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let storm_pid = rustix::process::getpid().as_raw_nonzero().get();

    let mut results: Vec<RunResult> = Vec::new();
    let mut failures = Vec::new();
    println!("\n{}", report::HEADER);
    for round in 0..args.rounds {
        let mut order = specs.clone();
        if !order.is_empty() {
            let k = round as usize % order.len();
            order.rotate_left(k);
        }
        for spec in &order {
            match one_run(&args, spec, round, storm_pid, &out_dir) {
                Ok(r) => {
                    println!("{}", report::row(&r));
                    results.push(r);
                }
                Err(e) => {
                    println!("{:<9} {:>5}  failed: {e:#}", spec.name, round);
                    failures
                        .push(serde_json::json!({"listener": spec.name, "round": round, "error": format!("{e:#}")}));
                }
            }
        }
    }

    let medians: Vec<Medians> = specs
        .iter()
        .filter_map(|s| {
            let runs: Vec<&RunResult> = results.iter().filter(|r| r.listener == s.name).collect();
            (!runs.is_empty()).then(|| Medians::of(s.name, &runs))
        })
        .collect();
    let floor = medians.iter().find(|m| m.listener == "cloop").map(|m| m.cpu_per_event);
    println!("\nmedians across rounds (µs/event ratio is to cloop's median):");
    println!("{}", report::MEDIAN_HEADER);
    for m in &medians {
        println!("{}", report::median_row(m, floor));
    }
    if let Some(verdict) = report::sink_verdict(&medians) {
        println!("\n{verdict}");
    }

    let ratio = record_ratio(&results, &medians);
    if let Some(r) = &ratio {
        println!("\n{}", r["text"].as_str().unwrap_or_default());
    }
    let load_end = read_trim("/proc/loadavg");
    println!("load average at end: {load_end}");
    let raw = serde_json::json!({
        "command": command,
        "machine": machine,
        "load_average": {"start": load_start, "end": load_end},
        "record_vs_json": ratio,
        "params": {"children": args.children, "workers": args.workers, "kind": args.kind.name(),
                   "nice": args.nice, "rounds": args.rounds, "cnlink_args": args.cnlink_args},
        "runs": results.iter().map(RunResult::to_json).collect::<Vec<_>>(),
        "medians": medians.iter().map(|m| m.to_json(floor)).collect::<Vec<_>>(),
        "failures": failures,
        "unavailable": unavailable,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&raw)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON results: {}", path.display());
    }
    if let (Some(path), Some(label)) = (&args.summary, &args.label) {
        summary::upsert(path, "storm", summary::entry("storm", label, &raw)?)?;
        println!("summary: {} ({label})", path.display());
    }
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One listener against one storm.
fn one_run(
    args: &Args,
    spec: &listener::Spec,
    round: u32,
    storm_pid: i32,
    out_dir: &std::path::Path,
) -> Result<RunResult> {
    let out = out_dir.join(format!("{}-r{round}.out", spec.name));
    // The sink gets a server, a spool and a stream of its own for the run.
    let mut broker = match spec.format {
        Format::Sink => Some(sink::Broker::start(&out_dir.join(format!("sink-r{round}")))?),
        _ => None,
    };
    let mut spec = spec.clone();
    spec.argv.extend(broker.iter().flat_map(sink::Broker::args));
    let mut running = listener::start(&spec, args.nice, &out)?;
    let storm = match gen::run(args.kind, args.children, args.workers) {
        Ok(s) => s,
        Err(e) => {
            let _ = running.stop();
            return Err(e).context("storm");
        }
    };
    let limit = Duration::from_secs(120);
    let drained = match &mut broker {
        // The sink's output is the stream: a marker's exit acknowledged by the server.
        Some(b) => running.drain_with(limit, |markers| Ok(b.shipped(markers))),
        None => running.drain_marked(spec.format, limit),
    };
    let usage = running.stop_within(if broker.is_some() { sink::STOP_GRACE } else { Duration::from_secs(5) })?;
    let drained = drained.with_context(|| format!("draining; stderr: {}", running.stderr()))?;
    let sink = match broker {
        Some(broker) => {
            let stderr = std::fs::read_to_string(out.with_extension("stderr")).unwrap_or_default();
            Some(broker.finish(&spec.argv[0], &out, &stderr).with_context(|| format!("stderr: {stderr}"))?)
        }
        None => None,
    };
    let replay = match &running.recording {
        Some(rec) => Some(read_recording(&spec.argv[0], rec, &out)?),
        None => None,
    };
    let mut tally = Tally::read(&out, spec.format, storm_pid).context("reading the listener's output")?;
    tally.forget(&running.markers);
    if !args.keep_output {
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(out.with_extension("stderr"));
        if let Some(rec) = &running.recording {
            let _ = std::fs::remove_file(rec);
        }
    }
    let replay = replay.map(|(json, text)| ReplaySpeed { events: tally.events, json, text });
    let created = multiset(&storm.ids);
    Ok(RunResult {
        listener: spec.name,
        round,
        children: storm.ids.len() as u64,
        rate: storm.rate(),
        forks_matched: matched(&created, &tally.forks),
        exits_matched: matched(&created, &tally.exits),
        events: tally.events,
        cpu_us: usage.cpu_us,
        max_rss_kib: usage.max_rss_kib,
        kernel_drops: usage.kernel_drops,
        lost_reported: tally.lost_reported,
        overruns: tally.overruns,
        drain_secs: drained.as_secs_f64(),
        stop_secs: usage.stop_secs,
        sink,
        replay,
    })
}

/// Runs `cnlink replay` on a recorder's recording, as fast as it goes: JSON, then text, to `/dev/null` (wall
/// seconds and CPU µs of each), then JSON into `out` for the tally.
fn read_recording(cnlink: &str, recording: &Path, out: &Path) -> Result<((f64, u64), (f64, u64))> {
    let timed = |format: &str, to: Stdio| -> Result<(f64, u64)> {
        let start = std::time::Instant::now();
        let child = Command::new(cnlink)
            .arg("replay")
            .arg(recording)
            .args(["--speed", "max", "--format", format])
            .stdout(to)
            .stderr(Stdio::null())
            .spawn()
            .context("starting cnlink replay")?;
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let (status, ru) = sys::wait4(pid, true)?.context("cnlink replay vanished")?;
        let secs = start.elapsed().as_secs_f64();
        // Exit status 1: the recording itself missed events (its channel was full); still read.
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) > 1 {
            anyhow::bail!("cnlink replay {} failed (wait status {status})", recording.display());
        }
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Ok((secs, us(ru.ru_utime) + us(ru.ru_stime)))
    };
    let json = timed("json", Stdio::null())?;
    let text = timed("text", Stdio::null())?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    timed("json", Stdio::from(file))?;
    Ok((json, text))
}

/// The recorder against `cnlink proc --format json` in the same run: CPU per event, the ratio of the medians and
/// the median of each round's ratio, and the replay rates.
fn record_ratio(results: &[RunResult], medians: &[Medians]) -> Option<serde_json::Value> {
    let json = medians.iter().find(|m| m.listener == "cnlink")?;
    let rec = medians.iter().find(|m| m.listener == "cnlink-record")?;
    let per_round: Vec<f64> = results
        .iter()
        .filter(|r| r.listener == "cnlink-record")
        .filter_map(|r| {
            let j = results.iter().find(|j| j.listener == "cnlink" && j.round == r.round)?;
            Some(r.cpu_per_event() / j.cpu_per_event())
        })
        .collect();
    let of_medians = rec.cpu_per_event / json.cpu_per_event;
    let median_of_rounds = common::median(&per_round);
    let (json_eps, text_eps) = rec.replay_eps.unwrap_or((f64::NAN, f64::NAN));
    let text = format!(
        "cnlink record vs cnlink proc --format json: {:.2} vs {:.2} µs/event, {of_medians:.2}x (median of the \
         rounds' ratios {median_of_rounds:.2}x; goal at most 1.5x)\nreplay --speed max to /dev/null (median): \
         json {json_eps:.0} events/s, text {text_eps:.0} events/s",
        rec.cpu_per_event, json.cpu_per_event
    );
    Some(serde_json::json!({
        "ratio_of_medians": of_medians, "median_of_round_ratios": median_of_rounds, "round_ratios": per_round,
        "replay_json_events_per_s": json_eps.round(), "replay_text_events_per_s": text_eps.round(), "text": text,
    }))
}
