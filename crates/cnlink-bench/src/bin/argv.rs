//! `argv`: how many short-lived programs each proc-connector listener names with their command line.
//!
//! ```text
//! cargo run --release -p cnlink-bench --bin argv -- [--runs 3000] [--rate 1200] [--rounds 3] \
//!     [--listeners cnlink,cnlink-exec,forkstat,cloop-argv] [--json PATH]
//! ```
//!
//! For each round and each listener in turn (the order rotates every round), it starts the listener, waits until
//! it provably receives events (as the storm benchmark does), then runs `/bin/true MARK-<round>-<i>` `--runs`
//! times, one after another, at about `--rate` a second, then `sh -c 'sleep 0.3' MARK-<round>-end`, waits until
//! the listener has printed that one (and its socket is empty: other processes on the machine cannot hold the
//! wait up), stops it, and counts the distinct `MARK-<round>-<i>` that appear on the listener's exec lines:
//! execs named with their argv.
//! `cloop-argv` (`bench/c/cloop_argv.c`) reads `/proc/PID/cmdline` in its receive loop as each exec arrives: the
//! reference. The summary gives each listener's median ratio and its ratio to the reference's.
#![deny(unsafe_code)]

#[path = "../common.rs"]
mod common;
#[path = "../storm/mod.rs"]
#[allow(dead_code)]
mod storm;
#[path = "../sys.rs"]
#[allow(dead_code)]
mod sys;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use storm::listener::{self, Spec};
use storm::parse::Format;
use storm::prepare;

/// Short-lived programs named with their argv, per listener.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Programs run per listener and round.
    #[arg(long, default_value_t = 3000)]
    runs: u32,
    /// Programs started per second (one after another).
    #[arg(long, default_value_t = 1200)]
    rate: u32,
    /// Rounds; each runs every listener once.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Listeners, in order.
    #[arg(long, value_delimiter = ',', default_values_t = ["cnlink".to_string(), "cnlink-exec".into(), "forkstat".into(), "cloop-argv".into()])]
    listeners: Vec<String>,
    /// Extra argument for every `cnlink proc` listener (repeatable).
    #[arg(long = "cnlink-arg", allow_hyphen_values = true)]
    cnlink_args: Vec<String>,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Do not run `cargo build` for cnlink.
    #[arg(long)]
    no_build: bool,
}

/// The reference listener.
const REFERENCE: &str = "cloop-argv";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("argv: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The listener called `name`, built or found.
fn spec(name: &str, args: &Args) -> Result<Spec, String> {
    let cnlink = |extra: &[&str]| -> Result<Spec, String> {
        let mut more: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        more.extend(args.cnlink_args.iter().cloned());
        let mut s = prepare::prepare(Format::Cnlink, !args.no_build, &more)?;
        s.name = if extra.is_empty() { "cnlink" } else { "cnlink-exec" };
        Ok(s)
    };
    match name {
        "cnlink" => cnlink(&[]),
        "cnlink-exec" => cnlink(&["-e", "exec"]),
        "forkstat" => {
            let mut s = prepare::prepare(Format::Forkstat, false, &[])?;
            s.argv.truncate(1);
            s.argv.extend(["-e".into(), "exec".into()]);
            Ok(s)
        }
        REFERENCE => {
            let bin = prepare::compile_c("cloop_argv")?;
            Ok(Spec { name: REFERENCE, format: Format::Cloop, argv: vec![bin.display().to_string()] })
        }
        other => Err(format!("unknown listener {other:?} (cnlink, cnlink-exec, forkstat, cloop-argv)")),
    }
}

/// Whether `line`, printed by `listener`, reports an exec.
fn is_exec_line(listener: &str, line: &str) -> bool {
    match listener {
        "cnlink" | "cnlink-exec" => line.contains("\"event\":\"exec\""),
        // forkstat: `TIME exec PID ...`; cloop_argv: `exec PID ARGV`.
        _ => line.split_whitespace().take(2).any(|w| w == "exec"),
    }
}

/// The distinct marks `MARK-<round>-<i>` on exec lines of `out`.
fn marks(out: &Path, listener: &str, round: u32) -> Result<HashSet<u32>> {
    let text = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
    let text = String::from_utf8_lossy(&text);
    let prefix = format!("MARK-{round}-");
    let mut seen = HashSet::new();
    for line in text.lines().filter(|l| is_exec_line(listener, l)) {
        for (at, _) in line.match_indices(&prefix) {
            let digits: String = line[at + prefix.len()..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(i) = digits.parse() {
                seen.insert(i);
            }
        }
    }
    Ok(seen)
}

/// Runs `/bin/true MARK-<round>-<i>` `runs` times at about `rate` a second; returns the achieved rate.
fn spawn_marks(runs: u32, rate: u32, round: u32) -> Result<f64> {
    let start = Instant::now();
    for i in 0..runs {
        let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate.max(1)));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let status = Command::new("/bin/true")
            .arg(format!("MARK-{round}-{i}"))
            .stdin(Stdio::null())
            .status()
            .context("running /bin/true")?;
        anyhow::ensure!(status.success(), "/bin/true failed: {status}");
    }
    Ok(f64::from(runs) / start.elapsed().as_secs_f64())
}

/// One listener's result in one round.
struct Run {
    listener: &'static str,
    round: u32,
    named: usize,
    rate: f64,
}

fn run() -> Result<ExitCode> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("argv: {command}");
    let mut specs = Vec::new();
    for name in &args.listeners {
        match spec(name, &args) {
            Ok(s) => specs.push(s),
            Err(why) => println!("listener {name}: unavailable: {why}"),
        }
    }
    let out_dir = prepare::target_dir().join("argv-runs");
    std::fs::create_dir_all(&out_dir)?;
    let mut runs = Vec::new();
    println!("\n{:<12} {:>5} {:>8} {:>8} {:>8}", "listener", "round", "named", "ratio", "rate/s");
    for round in 0..args.rounds {
        let mut order = specs.clone();
        if !order.is_empty() {
            let k = round as usize % order.len();
            order.rotate_left(k);
        }
        for s in &order {
            let out = out_dir.join(format!("{}-r{round}.out", s.name));
            let running = listener::start(s, 0, &out)?;
            let rate = spawn_marks(args.runs, args.rate, round);
            // The end: a marked program that lives long enough for every listener to name it.
            let end = format!("MARK-{round}-end");
            let drained = Command::new("sh")
                .args(["-c", "sleep 0.3", &end])
                .status()
                .map_err(anyhow::Error::from)
                .and_then(|_| running.wait_output(&end, Duration::from_secs(60)));
            running.stop()?;
            let rate = rate?;
            drained.with_context(|| format!("draining {}", s.name))?;
            let named = marks(&out, s.name, round)?.len();
            let _ = std::fs::remove_file(&out);
            let _ = std::fs::remove_file(out.with_extension("stderr"));
            println!(
                "{:<12} {:>5} {:>8} {:>7.1}% {:>8.0}",
                s.name,
                round,
                named,
                100.0 * named as f64 / f64::from(args.runs),
                rate
            );
            runs.push(Run { listener: s.name, round, named, rate });
        }
    }
    let ratio_of = |name: &str| {
        let ratios: Vec<f64> =
            runs.iter().filter(|r| r.listener == name).map(|r| r.named as f64 / f64::from(args.runs)).collect();
        common::median(&ratios)
    };
    let reference = ratio_of(REFERENCE);
    println!("\nmedians across rounds:");
    println!("{:<12} {:>8} {:>14}", "listener", "named", "vs cloop-argv");
    let mut medians = Vec::new();
    for s in &specs {
        let r = ratio_of(s.name);
        println!("{:<12} {:>7.1}% {:>13.2}x", s.name, 100.0 * r, r / reference);
        medians.push(serde_json::json!({"listener": s.name, "named_ratio": r, "vs_reference": r / reference}));
    }
    if let Some(path) = &args.json {
        let summary = serde_json::json!({
            "params": {"runs": args.runs, "rate": args.rate, "rounds": args.rounds, "cnlink_args": args.cnlink_args},
            "runs": runs.iter().map(|r| serde_json::json!({
                "listener": r.listener, "round": r.round, "named": r.named, "rate": r.rate,
            })).collect::<Vec<_>>(),
            "medians": medians,
        });
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_counted_once_and_only_on_exec_lines() {
        let dir = std::env::temp_dir().join(format!("argv-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("x.out");
        std::fs::write(
            &out,
            "{\"event\":\"exec\",\"cmdline\":\"/bin/true MARK-1-7\"}\n\
             {\"event\":\"exit\",\"cmdline\":\"/bin/true MARK-1-8\"}\n\
             {\"event\":\"exec\",\"argv\":[\"/bin/true\",\"MARK-1-7\"],\"cmdline\":\"/bin/true MARK-1-7\"}\n\
             {\"event\":\"exec\",\"cmdline\":\"/bin/true MARK-2-9\"}\n",
        )
        .unwrap();
        assert_eq!(marks(&out, "cnlink", 1).unwrap(), HashSet::from([7]));
        std::fs::write(&out, "exec 12 /bin/true MARK-0-3\nexec 13\n12:00:00 exec 14 /bin/true MARK-0-4\n").unwrap();
        assert_eq!(marks(&out, "cloop-argv", 0).unwrap(), HashSet::from([3, 4]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
