//! `bus`: round-trip latency and throughput through the userspace connector bus (`cnlink-bus`), next to a raw
//! `NETLINK_USERSOCK` ping-pong measured in the same run.
//!
//! ```text
//! cargo run --release -p cnlink-bench --bin bus -- [--rounds 5] [--requests 20000] [--warmup 1000] [--size 32] \
//!     [--scenarios raw,in-daemon,in-daemon-inline,remote,in-daemon-raw-client,in-daemon-inline-raw-client,\
//!      remote-raw-client,remote-raw-both] \
//!     [--messages 100000] [--fanout 1,8,64] [--sub-rcvbuf 0,212992] [--deliveries 800000] [--paced-rate 100000] \
//!     [--acked-messages 20000] [--no-latency] [--no-throughput] [--json PATH]
//! ```
//!
//! Every party is its own process: the harness re-executes this binary with a hidden role (`__raw-echo`,
//! `__daemon`, `__agent`, `__subscriber`), and is itself the client or the publisher. The children die with the
//! harness (`PR_SET_PDEATHSIG`) and are killed when a run ends or fails; every daemon gets a port id of its own.
//!
//! Latency, per round, in an order that rotates every round (so that a noisy moment of the shared machine
//! hits every scenario alike):
//! - `raw`: the floor. A ping-pong of a `cn_msg` of the same size between the harness and an echo process on
//!   two plain `cnlink::socket::Socket`s (`NETLINK_USERSOCK`, blocking `recv`, no bus).
//! - `in-daemon` (reported as "in-daemon, worker"): the harness's [`cnlink_bus::BusClient::request`] to an id
//!   served by a callback inside the daemon process on its worker thread ([`cnlink_bus::Bus::add_callback`]
//!   answering with [`cnlink_bus::Context::reply`]).
//! - `in-daemon-inline` ("in-daemon, inline"): the same to a second id whose echo callback runs on the daemon's
//!   receive thread ([`cnlink_bus::Bus::add_callback_inline`]): no hand-off to a worker thread.
//! - `remote`: the same request to an id registered by an agent process (a `BusClient` answering with
//!   [`cnlink_bus::BusClient::serve_echo`]); the bus relays the request and the reply.
//! - `in-daemon-raw-client`, `in-daemon-inline-raw-client`, `remote-raw-client`: the same three, asked with the
//!   raw ping-pong's loop instead of `BusClient` (same bytes): what the client library adds.
//! - `remote-raw-both`: a second agent that answers with the raw echo's loop on its registered socket, asked
//!   with the raw loop: what is left is the daemon's own share.
//!
//! Each timed round trip is one `Instant` pair around the send and the matching reply, after a warm-up.
//!
//! Throughput and fan-out, per round: a fresh daemon, `n` subscriber processes that joined group `G`
//! ([`cnlink_bus::BusClient::join`]) and count with [`cnlink_bus::BusClient::recv`], and the harness as
//! publisher: it registers `{G, 1}` and sends as fast as the bus accepts (the PUBLISH op,
//! [`cnlink_bus::wire::publish_op`], for its own id: `cn_netlink_send` to the group, with no reply). Its socket is blocking, so a full bus
//! socket makes it wait rather than lose; the bus sends to subscribers without blocking, and what a full
//! subscriber socket refuses is counted by the bus (`dropped_full`) and by the subscriber (gaps in the counters
//! the payload carries). The publisher ends with STATS round trips (the bus handles its socket in order, so the
//! answer means every message was routed), then tells the subscribers to drain and report. Each fan-out runs
//! once per `--sub-rcvbuf`; one subscriber is also fed by a publisher paced at `--paced-rate`, and by
//! [`cnlink_bus::BusClient::send_group`], which waits for the bus's answer to every message.
#![deny(unsafe_code)]

#[path = "../bus/mod.rs"]
mod bus;
#[path = "../common.rs"]
mod common;
#[path = "../summary.rs"]
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use bus::roles::Role;
use bus::{fanout, latency, report};

/// Bus benchmark: request/reply latency against a raw ping-pong, throughput and fan-out.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// A role this binary plays as a child of the harness (hidden).
    #[command(subcommand)]
    role: Option<Role>,
    #[command(flatten)]
    args: Args,
}

/// The harness's options.
#[derive(clap::Args, Debug, Clone)]
struct Args {
    /// Rounds; each runs every latency scenario and every fan-out once.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Timed round trips per latency scenario and round.
    #[arg(long, default_value_t = 20_000)]
    requests: u32,
    /// Untimed round trips before each timed series.
    #[arg(long, default_value_t = 1_000)]
    warmup: u32,
    /// Data bytes per message (at least 8: the throughput runs carry a counter).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// Messages the publisher sends per fan-out run.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Subscriber counts, one fan-out run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64])]
    fanout: Vec<u32>,
    /// Offered rate of an extra one-subscriber run with a paced publisher, messages/s; 0 skips it.
    #[arg(long, default_value_t = 100_000)]
    paced_rate: u64,
    /// Messages for the acknowledged (`send_group`) one-subscriber run; 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    acked_messages: u64,
    /// Receive buffers the subscribers ask for, in bytes, one set of fan-out runs each (0: what
    /// `BusClient::connect` asks for, `cnlink_bus::CLIENT_RECV_BUFFER`; 212992 is the usual system default,
    /// `net.core.rmem_default`).
    #[arg(long, value_delimiter = ',', default_values_t = [0, 212_992])]
    sub_rcvbuf: Vec<usize>,
    /// Most deliveries due in one fan-out run (subscribers × messages): large fan-outs send fewer messages.
    #[arg(long, default_value_t = 800_000)]
    deliveries: u64,
    /// Latency scenarios to run, in the first round's order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = latency::Scenario::ALL)]
    scenarios: Vec<latency::Scenario>,
    /// Skip the latency scenarios.
    #[arg(long)]
    no_latency: bool,
    /// Skip the throughput and fan-out runs.
    #[arg(long)]
    no_throughput: bool,
    /// Write the raw results (every run, the medians) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Add the medians to this summary file (the one kept in git, e.g. bench/summary/bus.json), under
    /// `--label`.
    #[arg(long, requires = "label")]
    summary: Option<PathBuf>,
    /// The label of this run in the summary file (an entry with the same label is replaced).
    #[arg(long)]
    label: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.role {
        Some(role) => role.run().map(|()| ExitCode::SUCCESS),
        None => run(cli.args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bus: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into())
}

fn run(args: Args) -> Result<ExitCode> {
    anyhow::ensure!(args.size >= 8, "--size must be at least 8 (the throughput runs carry a u64 counter)");
    anyhow::ensure!(args.rounds > 0 && args.requests > 0, "--rounds and --requests must be positive");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let machine = serde_json::json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "rmem_default": read_trim("/proc/sys/net/core/rmem_default"),
        "rmem_max": read_trim("/proc/sys/net/core/rmem_max"),
        "loadavg_start": read_trim("/proc/loadavg"),
    });
    println!("bus: {command}");
    println!(
        "machine: nproc={} kernel={} rmem_default={} loadavg={}",
        machine["nproc"], machine["kernel"], machine["rmem_default"], machine["loadavg_start"]
    );

    let mut lat = None;
    if !args.no_latency {
        let cfg = latency::Config {
            rounds: args.rounds,
            requests: args.requests,
            warmup: args.warmup,
            size: args.size,
            scenarios: args.scenarios.clone(),
        };
        lat = Some(latency::run(&cfg).context("latency scenarios")?);
    }
    let mut thr = None;
    if !args.no_throughput {
        let cfg = fanout::Config {
            rounds: args.rounds,
            size: args.size,
            messages: args.messages,
            fanout: args.fanout.clone(),
            acked_messages: args.acked_messages,
            paced_rate: args.paced_rate,
            sub_rcvbuf: args.sub_rcvbuf.clone(),
            deliveries: args.deliveries,
        };
        thr = Some(fanout::run(&cfg).context("throughput scenarios")?);
    }

    let lat_summary = lat.as_ref().map(|runs| report::latency_summary(runs));
    let thr_summary = thr.as_ref().map(|(runs, _)| report::throughput_summary(runs));
    if let Some(s) = &lat_summary {
        println!("\n{}", report::latency_table(s));
    }
    if let Some(s) = &thr_summary {
        println!("\n{}", report::throughput_table(s));
    }

    let mut machine = machine;
    machine["loadavg_end"] = read_trim("/proc/loadavg").into();
    let scenarios: Vec<&str> = args.scenarios.iter().map(|s| s.name()).collect();
    let lat_runs: Vec<_> = lat.iter().flatten().map(latency::Run::to_json).collect();
    let lat_medians: Option<Vec<_>> = lat_summary.as_ref().map(|s| s.iter().map(|m| m.to_json()).collect());
    let thr_runs: Vec<_> = thr.iter().flat_map(|(runs, _)| runs).map(fanout::Run::to_json).collect();
    let thr_medians: Option<Vec<_>> = thr_summary.as_ref().map(|s| s.iter().map(|m| m.to_json()).collect());
    let raw = serde_json::json!({
        "command": command,
        "machine": machine,
        "params": {
            "rounds": args.rounds, "requests": args.requests, "warmup": args.warmup, "size": args.size,
            "scenarios": scenarios, "messages": args.messages, "fanout": args.fanout,
            "sub_rcvbuf": args.sub_rcvbuf, "deliveries": args.deliveries, "paced_rate": args.paced_rate,
            "acked_messages": args.acked_messages,
        },
        "latency": { "runs": lat_runs, "medians": lat_medians },
        "throughput": { "runs": thr_runs, "failures": thr.as_ref().map(|(_, f)| f), "medians": thr_medians },
    });
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&raw)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\nJSON results: {}", path.display());
    }
    if let (Some(path), Some(label)) = (&args.summary, &args.label) {
        summary::upsert(path, "bus", summary::entry("bus", label, &raw)?)?;
        println!("summary: {} ({label})", path.display());
    }
    let failed = thr.as_ref().is_some_and(|(_, f)| !f.is_empty());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
