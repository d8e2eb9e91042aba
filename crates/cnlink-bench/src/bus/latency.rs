//! The latency scenarios: a raw ping-pong (the floor), a request to a callback inside the daemon (on a worker
//! thread, and inline on the receive thread), and a request to a remote agent through the daemon, interleaved
//! round by round.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink_bus::BusClient;
use serde_json::{json, Value};

use super::child::Proc;
use super::unique_port;

/// The id the daemon's echo callback on a worker thread serves.
pub(crate) const LOCAL_ID: CbId = CbId::new(0x4c4f, 1);
/// The id the daemon's inline echo callback serves (the daemon role registers it at `LOCAL_ID.val + 1`).
pub(crate) const LOCAL_INLINE_ID: CbId = CbId::new(0x4c4f, 2);
/// The id the remote agent registers.
pub(crate) const REMOTE_ID: CbId = CbId::new(0x5245, 1);
/// The id the raw remote agent registers.
pub(crate) const REMOTE_RAW_ID: CbId = CbId::new(0x5246, 1);
/// How long one round trip may take before the run fails.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a party may take to start.
const START: Duration = Duration::from_secs(10);

/// What the latency scenarios do.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Rounds.
    pub(crate) rounds: u32,
    /// Timed round trips per scenario and round.
    pub(crate) requests: u32,
    /// Untimed round trips first.
    pub(crate) warmup: u32,
    /// Data bytes per message.
    pub(crate) size: usize,
    /// The scenarios to run, in the first round's order.
    pub(crate) scenarios: Vec<Scenario>,
}

/// A latency scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Raw `NETLINK_USERSOCK` ping-pong between two processes.
    Raw,
    /// `BusClient::request` to a callback inside the daemon process, on its worker thread (`Bus::add_callback`).
    InDaemon,
    /// `BusClient::request` to a callback inside the daemon process that runs on the receive thread
    /// (`Bus::add_callback_inline`).
    InDaemonInline,
    /// `BusClient::request` to an agent process, relayed by the daemon.
    Remote,
    /// The in-daemon worker callback, asked with the raw loop instead of `BusClient` (same bytes): the client
    /// library's share.
    InDaemonRawClient,
    /// The in-daemon inline callback, asked with the raw loop.
    InDaemonInlineRawClient,
    /// The remote agent, asked with the raw loop.
    RemoteRawClient,
    /// A remote agent that answers with the raw loop, asked with the raw loop: the bus daemon's own share.
    RemoteRawBoth,
}

impl Scenario {
    /// Every scenario, in the first round's order.
    pub(crate) const ALL: [Scenario; 8] = [
        Scenario::Raw,
        Scenario::InDaemon,
        Scenario::InDaemonInline,
        Scenario::Remote,
        Scenario::InDaemonRawClient,
        Scenario::InDaemonInlineRawClient,
        Scenario::RemoteRawClient,
        Scenario::RemoteRawBoth,
    ];

    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Raw => "raw",
            Scenario::InDaemon => "in-daemon, worker",
            Scenario::InDaemonInline => "in-daemon, inline",
            Scenario::Remote => "remote",
            Scenario::InDaemonRawClient => "in-daemon worker, raw client",
            Scenario::InDaemonInlineRawClient => "in-daemon inline, raw client",
            Scenario::RemoteRawClient => "remote, raw client",
            Scenario::RemoteRawBoth => "remote, raw client+agent",
        }
    }

    /// The target for the p50 ratio to raw, if it sets one.
    pub(crate) fn target_ratio(self) -> Option<f64> {
        match self {
            Scenario::Raw
            | Scenario::InDaemonRawClient
            | Scenario::InDaemonInlineRawClient
            | Scenario::RemoteRawClient
            | Scenario::RemoteRawBoth => None,
            Scenario::InDaemon | Scenario::InDaemonInline => Some(1.5),
            Scenario::Remote => Some(3.0),
        }
    }
}

/// One timed series: one scenario in one round.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// Round number (0-based).
    pub(crate) round: u32,
    /// Timed round trips.
    pub(crate) n: usize,
    /// Median round trip, ns.
    pub(crate) p50_ns: u64,
    /// 99th percentile, ns.
    pub(crate) p99_ns: u64,
    /// Mean, ns.
    pub(crate) mean_ns: f64,
    /// Fastest, ns.
    pub(crate) min_ns: u64,
    /// Slowest, ns.
    pub(crate) max_ns: u64,
    /// Wall time of the timed series, s (round trips one after another: `n / secs` is messages per second).
    pub(crate) secs: f64,
    /// The 1-minute load average when the series ended.
    pub(crate) loadavg: f64,
}

/// The `p`-th percentile of sorted samples (nearest rank).
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Run {
    fn of(scenario: Scenario, round: u32, mut samples: Vec<u64>, secs: f64) -> Run {
        samples.sort_unstable();
        let n = samples.len();
        Run {
            scenario,
            round,
            n,
            p50_ns: percentile(&samples, 50.0),
            p99_ns: percentile(&samples, 99.0),
            mean_ns: samples.iter().sum::<u64>() as f64 / n.max(1) as f64,
            min_ns: samples.first().copied().unwrap_or(0),
            max_ns: samples.last().copied().unwrap_or(0),
            secs,
            loadavg: super::loadavg(),
        }
    }

    /// Round trips per second in the timed series.
    pub(crate) fn rate(&self) -> f64 {
        self.n as f64 / self.secs.max(1e-9)
    }

    /// Machine-readable form.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(), "round": self.round, "n": self.n, "p50_ns": self.p50_ns,
            "p99_ns": self.p99_ns, "mean_ns": self.mean_ns, "min_ns": self.min_ns, "max_ns": self.max_ns,
            "secs": self.secs, "round_trips_per_sec": self.rate(),
            "loadavg": self.loadavg,
        })
    }
}

/// The harness's end of the raw ping-pong: a prebuilt datagram whose `seq` changes each time.
struct RawClient {
    sock: Socket,
    to: NlAddr,
    dgram: Vec<u8>,
    buf: Vec<u8>,
    seq: u32,
}

/// Offsets of `seq` and `ack` in a datagram: after the 16-byte `nlmsghdr` and `cn_msg`'s `idx` and `val`.
const SEQ: usize = 16 + 8;
const ACK: usize = 16 + 12;

fn field(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes)
}

impl RawClient {
    fn new(port: u32, id: CbId, size: usize) -> Result<RawClient> {
        let sock = Socket::open(Protocol::Usersock)?;
        rustix::net::sockopt::set_socket_timeout(&sock, rustix::net::sockopt::Timeout::Recv, Some(TIMEOUT))?;
        let hdr = CnMsgHdr { id, ..Default::default() };
        let dgram = wire::datagram(hdr, &vec![0x5a; size], sock.port())?;
        Ok(RawClient { sock, to: NlAddr::port(port), dgram, buf: vec![0; 1 << 16], seq: 0 })
    }

    /// One blocking send and one blocking receive (more if something else arrives).
    fn round_trip(&mut self) -> Result<()> {
        self.seq = self.seq.wrapping_add(1);
        self.dgram[SEQ..SEQ + 4].copy_from_slice(&self.seq.to_ne_bytes());
        self.sock.send_to(&self.dgram, self.to).context("raw send")?;
        loop {
            let meta = self.sock.recv(&mut self.buf).context("raw recv (echo gone?)")?;
            let d = &self.buf[..meta.len];
            if meta.from.port == self.to.port && field(d, SEQ) == Some(self.seq) && field(d, ACK) == Some(1) {
                return Ok(());
            }
        }
    }
}

fn bus_round_trip(c: &mut BusClient, id: CbId, payload: &[u8]) -> Result<()> {
    let r = c.request(id, payload, TIMEOUT).with_context(|| format!("request to {id}"))?;
    ensure!(r.data == payload, "the reply from {id} does not echo the request");
    Ok(())
}

/// `warmup` untimed calls, then `n` timed ones; returns the samples (ns) and the timed series' wall time.
fn series(warmup: u32, n: u32, mut f: impl FnMut() -> Result<()>) -> Result<(Vec<u64>, f64)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut samples = Vec::with_capacity(n as usize);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_nanos() as u64);
    }
    Ok((samples, start.elapsed().as_secs_f64()))
}

/// Starts an agent process answering `id` on the bus at `bus_port`, with `BusClient::serve_echo` or, `raw`,
/// with the raw echo loop on its registered socket.
fn spawn_agent(name: &str, bus_port: u32, id: CbId, raw: bool) -> Result<Proc> {
    let mut args = vec!["__agent".to_string()];
    if raw {
        args.push("--raw".into());
    }
    args.extend(["--bus".into(), bus_port.to_string(), "--idx".into(), id.idx.to_string()]);
    args.extend(["--val".into(), id.val.to_string()]);
    Proc::spawn(name, &args)
}

/// Starts the parties (raw echo, daemon with its callback, agent), runs every scenario every round in a
/// rotating order, and kills the parties.
pub(crate) fn run(cfg: &Config) -> Result<Vec<Run>> {
    let echo_port = unique_port();
    let mut echo = Proc::spawn("raw-echo", &["__raw-echo".into(), "--port".into(), echo_port.to_string()])?;
    echo.ready(START)?;
    let bus_port = unique_port();
    let mut daemon = Proc::spawn(
        "daemon",
        &[
            "__daemon".into(),
            "--port".into(),
            bus_port.to_string(),
            "--echo-idx".into(),
            LOCAL_ID.idx.to_string(),
            "--echo-val".into(),
            LOCAL_ID.val.to_string(),
        ],
    )?;
    daemon.ready(START)?;
    let mut agent = spawn_agent("agent", bus_port, REMOTE_ID, false)?;
    agent.ready(START)?;
    let mut raw_agent = spawn_agent("raw-agent", bus_port, REMOTE_RAW_ID, true)?;
    raw_agent.ready(START)?;
    println!(
        "latency: raw echo pid {} port {echo_port:#x}; daemon pid {} port {bus_port:#x}; agents pid {} and {}",
        echo.pid(),
        daemon.pid(),
        agent.pid(),
        raw_agent.pid()
    );

    let payload = vec![0x5a; cfg.size];
    let mut raw = RawClient::new(echo_port, LOCAL_ID, cfg.size)?;
    let mut raw_local = RawClient::new(bus_port, LOCAL_ID, cfg.size)?;
    let mut raw_inline = RawClient::new(bus_port, LOCAL_INLINE_ID, cfg.size)?;
    let mut raw_remote = RawClient::new(bus_port, REMOTE_ID, cfg.size)?;
    let mut raw_both = RawClient::new(bus_port, REMOTE_RAW_ID, cfg.size)?;
    let mut client = BusClient::connect(bus_port)?;
    println!(
        "\n{:<29} {:>5} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
        "scenario", "round", "p50 µs", "p99 µs", "mean µs", "min µs", "rt/s", "p50×raw"
    );
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..cfg.rounds {
        let mut order = cfg.scenarios.clone();
        let k = round as usize % order.len().max(1);
        order.rotate_left(k);
        for s in order {
            let (samples, secs) = match s {
                Scenario::Raw => series(cfg.warmup, cfg.requests, || raw.round_trip()),
                Scenario::InDaemon => {
                    series(cfg.warmup, cfg.requests, || bus_round_trip(&mut client, LOCAL_ID, &payload))
                }
                Scenario::InDaemonInline => {
                    series(cfg.warmup, cfg.requests, || bus_round_trip(&mut client, LOCAL_INLINE_ID, &payload))
                }
                Scenario::Remote => {
                    series(cfg.warmup, cfg.requests, || bus_round_trip(&mut client, REMOTE_ID, &payload))
                }
                Scenario::InDaemonRawClient => series(cfg.warmup, cfg.requests, || raw_local.round_trip()),
                Scenario::InDaemonInlineRawClient => series(cfg.warmup, cfg.requests, || raw_inline.round_trip()),
                Scenario::RemoteRawClient => series(cfg.warmup, cfg.requests, || raw_remote.round_trip()),
                Scenario::RemoteRawBoth => series(cfg.warmup, cfg.requests, || raw_both.round_trip()),
            }
            .with_context(|| format!("{} round {round}", s.name()))?;
            runs.push(Run::of(s, round, samples, secs));
        }
        let raw_p50 = runs.iter().rev().find(|r| r.round == round && r.scenario == Scenario::Raw).map(|r| r.p50_ns);
        for r in runs.iter().filter(|r| r.round == round) {
            let us = |ns: u64| ns as f64 / 1000.0;
            println!(
                "{:<29} {:>5} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.0} {:>8.2}",
                r.scenario.name(),
                r.round,
                us(r.p50_ns),
                us(r.p99_ns),
                r.mean_ns / 1000.0,
                us(r.min_ns),
                r.rate(),
                raw_p50.map_or(f64::NAN, |f| r.p50_ns as f64 / f as f64)
            );
        }
    }
    Ok(runs)
}
