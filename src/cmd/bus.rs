//! `cnlink bus`: the connector core in userspace on `NETLINK_USERSOCK` (the daemon), and its tools: `list`,
//! `stats`, `echo IDX.VAL` (the userspace twin of the kernel's `cn_test`) and `test` (a `cn_test`/`ucon`-style
//! scenario against a running bus). The protocol is in docs/bus-protocol.md.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cnlink::wire::CbId;
use cnlink::{ClientItem, OwnedMsg};
use cnlink_bus::wire::{CtlMsg, NotifyRange};
use cnlink_bus::{Bus, BusClient, BusOptions, ClientError, Config, Policy, DEFAULT_PORT};

use super::{parse_duration, Format};
use crate::service::daemon::Daemon;
use crate::service::metrics::Metrics;
use crate::service::{reports, ServiceArgs};
use cnlink::wire::Escaped;

/// Parses a port id: decimal or 0x hex.
fn parse_port(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("invalid port id {s:?} (decimal or 0x hex)"))
}

/// The connector core in userspace: run the bus daemon, or talk to a running one.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BusArgs {
    #[command(subcommand)]
    cmd: Option<BusCmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
enum BusCmd {
    /// List the registered ids, like /proc/net/connector.
    List(ListArgs),
    /// Print the daemon's counters.
    Stats(BusAddr),
    /// Register ids and answer every message with the same seq, ack + 1 and payload (like cn_test).
    Echo(EchoArgs),
    /// Run a cn_test/ucon-style scenario against a running bus and report what it saw.
    Test(TestArgs),
}

/// Where the bus is and whom to trust there.
#[derive(Debug, Clone, clap::Args)]
struct BusAddr {
    /// The bus daemon's port id.
    #[arg(long, default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    port: u32,
    /// Accept answers from the bus's port only from this uid, the daemon's user (repeatable; default: root and
    /// your own uid). Anyone can bind the port while the daemon is down; answers from other users are refused.
    #[arg(long = "bus-uid", value_name = "UID")]
    bus_uids: Vec<u32>,
}

/// Run the daemon.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The port id to listen on (decimal or 0x hex).
    #[arg(long, default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    port: u32,
    /// Policy file (TOML): who may register and send to which ids, per-user limits.
    #[arg(long)]
    policy: Option<std::path::PathBuf>,
    /// Register an echo callback inside the daemon for this id (repeatable). It answers on the daemon's
    /// receive thread (it never blocks), so it has no queue.
    #[arg(long, value_name = "IDX.VAL")]
    echo: Vec<CbId>,
    /// Messages each in-daemon callback on a worker thread may have queued.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Log registrations and departures, not only denials.
    #[arg(short, long)]
    verbose: bool,
    /// Log lines that may wait for stderr; beyond them lines are dropped and counted (log_dropped), so that a
    /// blocked stderr never stops the bus.
    #[arg(long, value_name = "LINES", default_value_t = 1024)]
    log_queue: usize,
    /// The daemon socket's receive buffer (forced past rmem_max when privileged), e.g. 8M.
    #[arg(long, value_name = "BYTES", default_value = "4M", value_parser = super::parse_size)]
    rcvbuf: usize,
    #[command(flatten)]
    service: ServiceArgs,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    bus: BusAddr,
    /// Also show each id's group, owner port and uid.
    #[arg(short, long)]
    long: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, clap::Args)]
struct EchoArgs {
    /// Ids to register and answer (IDX.VAL).
    #[arg(required = true)]
    ids: Vec<CbId>,
    #[command(flatten)]
    bus: BusAddr,
    /// Name to register under.
    #[arg(long, default_value = "cn_echo")]
    name: String,
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    #[command(flatten)]
    bus: BusAddr,
    /// The id the test agent registers (cn_test's {CN_NETLINK_USERS + 3, 0x456} by default).
    #[arg(long, default_value = "14.0x456")]
    id: CbId,
    /// Requests to send.
    #[arg(long, default_value_t = 10)]
    count: u32,
    /// How long to wait for each answer.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Runs `cnlink bus`.
pub(crate) fn run(args: BusArgs) -> anyhow::Result<ExitCode> {
    match args.cmd {
        None => serve(args.serve),
        Some(BusCmd::List(a)) => list(a),
        Some(BusCmd::Stats(b)) => stats(&b),
        Some(BusCmd::Echo(a)) => echo(a),
        Some(BusCmd::Test(a)) => test(a),
    }
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    Ok(stop)
}

/// A client of the bus at `b`, once the bus has answered it.
fn connect(b: &BusAddr) -> anyhow::Result<BusClient> {
    let mut c = BusClient::connect(b.port).context("opening a NETLINK_USERSOCK socket")?;
    if !b.bus_uids.is_empty() {
        c.set_bus_uids(&b.bus_uids);
    }
    match c.stats() {
        Ok(_) => Ok(c),
        Err(e @ ClientError::Connector(cnlink::Error::UntrustedPeer { .. })) => Err(anyhow::Error::new(e)
            .context(format!("refusing the holder of port {:#x} (--bus-uid trusts another user)", b.port))),
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("no bus answers on port {:#x} (is `cnlink bus` running?)", b.port)))
        }
    }
}

/// Says on stderr that `tool`'s socket overflowed: the kernel dropped datagrams for it; `total` so far.
fn overrun(tool: &str, total: u64) {
    eprintln!("cnlink bus {tool}: overrun: the receive buffer was full, the kernel dropped messages ({total} so far)");
}

/// Reports the overruns a client had while waiting for its answers, if any.
fn report_overruns(tool: &str, c: &BusClient) {
    let total = c.counters().overruns;
    if total > 0 {
        overrun(tool, total);
    }
}

/// The next message within `timeout` (`None` after it); overruns on the way are reported and counted.
fn next_message(tool: &str, c: &mut BusClient, timeout: Duration) -> anyhow::Result<Option<OwnedMsg>> {
    let deadline = Instant::now() + timeout;
    loop {
        match c.recv(Some(deadline.saturating_duration_since(Instant::now())))? {
            Some(ClientItem::Message(m)) => return Ok(Some(m)),
            Some(ClientItem::Overrun) => overrun(tool, c.counters().overruns),
            Some(_) => {}
            None => return Ok(None),
        }
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let policy = match &a.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Policy::from_toml(&text)?
        }
        None => Policy::default(),
    };
    let opts = BusOptions {
        port: a.port,
        config: Config { policy, ..Config::default() },
        queue_len: a.queue,
        verbose: a.verbose,
        log_queue: a.log_queue,
        recv_buffer: a.rcvbuf,
    };
    let (mut daemon, metrics) = Daemon::start(a.service.metrics, Metrics::bus)?;
    let bus = Bus::bind(opts).with_context(|| format!("binding NETLINK_USERSOCK port {:#x}", a.port))?;
    for id in a.echo {
        // Inline: replying is one non-blocking send, so the echo cannot hold up the other ids, and it saves
        // the hand-off to a worker thread on every message.
        bus.add_callback_inline(id, "cn_echo", |ctx, d| {
            let _ = ctx.reply(d, &d.data);
        })
        .with_context(|| format!("registering the echo callback {id}"))?;
    }
    let stop = stop_flag()?;
    let handle = bus.spawn()?;
    eprintln!("cnlink bus: listening on NETLINK_USERSOCK port {:#x} ({})", bus.port(), bus.port());
    daemon.ready();
    // The bus thread turns at least every HEARTBEAT; the watchdog is fed only while it does.
    let mut beat = (bus.heartbeat(), Instant::now());
    while !stop.load(Ordering::Relaxed) && !handle.is_finished() {
        let now = Instant::now();
        if bus.heartbeat() != beat.0 {
            beat = (bus.heartbeat(), now);
        }
        let alive = now.saturating_duration_since(beat.1) < 3 * cnlink_bus::daemon::HEARTBEAT;
        if daemon.tick_if(now, alive) {
            reports::bus(&mut daemon, metrics.as_ref(), &bus.stats());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stopping();
    handle.stop().context("the bus stopped")?;
    let s = bus.stats();
    eprintln!(
        "cnlink bus: stopped; {} datagrams, {} malformed, {} denied, {} over limits, {} dropped",
        s.received,
        s.malformed,
        s.denied,
        s.over_limit,
        s.dropped_local + s.dropped_full
    );
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(&a.bus)?;
    let entries = c.list()?;
    report_overruns("list", &c);
    let mut out = std::io::stdout().lock();
    match a.format {
        Format::Json => {
            for e in entries {
                let v = serde_json::json!({
                    "name": e.name, "idx": e.id.idx, "val": e.id.val, "group": e.group, "port": e.port, "uid": e.uid,
                });
                writeln!(out, "{v}")?;
            }
        }
        Format::Text if a.long => {
            writeln!(out, "{:<15} {:<23} {:>10} {:>10} {:>6}", "Name", "ID", "group", "port", "uid")?;
            for e in entries {
                let (name, id) = (Escaped(e.name.as_bytes()), format!("{}:{}", e.id.idx, e.id.val));
                writeln!(out, "{name:<15} {id:<23} {:>10} {:>10} {:>6}", e.group, e.port, e.uid)?;
            }
        }
        Format::Text => {
            writeln!(out, "Name            ID")?;
            for e in entries {
                writeln!(out, "{:<15} {}:{}", Escaped(e.name.as_bytes()), e.id.idx, e.id.val)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(b: &BusAddr) -> anyhow::Result<ExitCode> {
    let mut c = connect(b)?;
    let counters = c.stats()?;
    report_overruns("stats", &c);
    let mut out = std::io::stdout().lock();
    for (name, v) in counters {
        writeln!(out, "{name:<18} {v}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn echo(a: EchoArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(&a.bus)?;
    for id in &a.ids {
        c.register(*id, &a.name).with_context(|| format!("registering {id}"))?;
    }
    eprintln!(
        "cnlink bus echo: answering {} on bus port {:#x} (my port {})",
        a.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        a.bus.port,
        c.port()
    );
    let stop = stop_flag()?;
    let named: Vec<(CbId, &str)> = a.ids.iter().map(|id| (*id, a.name.as_str())).collect();
    let mut overruns = 0;
    let done = c.serve_echo(&named, Duration::from_secs(1), |p| {
        if p.counters.overruns > overruns {
            overruns = p.counters.overruns;
            overrun("echo", overruns);
        }
        !stop.load(Ordering::Relaxed)
    })?;
    for id in &a.ids {
        let _ = c.unregister(*id);
    }
    let n = done.counters;
    eprintln!(
        "cnlink bus echo: answered {} messages; {} overruns, {} datagrams refused (not from the trusted bus)",
        done.answered, n.overruns, n.rejected
    );
    Ok(ExitCode::SUCCESS)
}

/// The report of `bus test`: one line per step.
struct Report<W> {
    out: W,
    all: bool,
}

impl<W: Write> Report<W> {
    /// One line of the report; returns `ok`.
    fn check(&mut self, ok: bool, what: &str) -> std::io::Result<bool> {
        self.all &= ok;
        writeln!(self.out, "{} {what}", if ok { "ok  " } else { "FAIL" })?;
        Ok(ok)
    }

    /// A step that either worked or failed with an error, which the line then names.
    fn step<T>(&mut self, r: Result<T, ClientError>, what: &str) -> std::io::Result<Option<T>> {
        match r {
            Ok(v) => self.check(true, what).map(|_| Some(v)),
            Err(e) => self.check(false, &format!("{what}: {e}")).map(|_| None),
        }
    }

    fn finish(mut self) -> anyhow::Result<ExitCode> {
        writeln!(self.out, "{}", if self.all { "result: PASS" } else { "result: FAIL" })?;
        Ok(if self.all { ExitCode::SUCCESS } else { ExitCode::from(1) })
    }
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report { out: std::io::stdout().lock(), all: true };
    let [mut watcher, mut requester, mut subscriber, mut agent] =
        [connect(&a.bus)?, connect(&a.bus)?, connect(&a.bus)?, connect(&a.bus)?];
    let (id, wait) = (a.id, a.timeout);
    // Notifications for the test id, on a group nobody else uses (0xffffffff minus our port).
    let ngroup = u32::MAX - watcher.port();
    let req = CtlMsg {
        group: ngroup,
        idx: vec![NotifyRange { first: id.idx, range: 1 }],
        val: vec![NotifyRange { first: id.val, range: 1 }],
    };
    r.step(watcher.notify(&req), &format!("notification request for {id} on group {ngroup:#x}"))?;
    if r.step(agent.register(id, "cn_test"), &format!("registered {id} (group {})", id.idx))?.is_none() {
        return r.finish();
    }
    let added = next_message("test", &mut watcher, wait)?;
    r.check(added.is_some_and(|m| m.hdr.id == id && m.hdr.ack == 0), "notification: added (ack 0)")?;
    // The agent echoes on a thread, like cn_test's callback.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let agent = std::thread::spawn(move || {
        let r = agent.serve_echo(&[(id, "cn_test")], Duration::from_secs(5), |_| !stop2.load(Ordering::Relaxed));
        (agent, r)
    });
    let (matched, p50) = round_trips(&mut requester, id, a.count, wait)?;
    r.check(
        matched == a.count,
        &format!("{matched}/{} replies with the same seq, ack + 1 and payload; round trip p50 {p50:.0} us", a.count),
    )?;
    stop.store(true, Ordering::Relaxed);
    let (mut agent, served) = agent.join().map_err(|_| anyhow::anyhow!("the agent thread panicked"))?;
    served?;
    // The owner sends on its id with group 0 (the SEND op): the bus looks up group idx, as cn_test's timer does.
    subscriber.join(id.idx)?;
    agent.send_group(0, id, b"counter = 1\0")?;
    let got = next_message("test", &mut subscriber, wait)?;
    r.check(
        got.is_some_and(|m| m.hdr.id == id && m.data == b"counter = 1\0"),
        &format!("group {} subscriber got the owner's message (group 0 lookup)", id.idx),
    )?;
    agent.unregister(id)?;
    let removed = next_message("test", &mut watcher, wait)?;
    r.check(removed.is_some_and(|m| m.hdr.id == id && m.hdr.ack == 1), "notification: removed (ack 1)")?;
    watcher.notify(&CtlMsg { group: 0, ..req })?;
    r.finish()
}

/// Sends `count` cn_test-style requests to `id`, each waiting up to `wait` for its reply; returns how many came
/// back with the right seq, ack and payload, and the median round trip in microseconds.
fn round_trips(requester: &mut BusClient, id: CbId, count: u32, wait: Duration) -> anyhow::Result<(u32, f64)> {
    let mut rtts = Vec::new();
    let mut matched = 0;
    for i in 0..count {
        let payload = format!("counter = {i}\0");
        let t0 = Instant::now();
        let (seq, ack) = requester.send(id, payload.as_bytes())?;
        let deadline = t0 + wait;
        while let Some(m) = next_message("test", requester, deadline.saturating_duration_since(Instant::now()))? {
            if m.hdr.id == id && m.hdr.seq == seq && m.hdr.ack == ack.wrapping_add(1) {
                rtts.push(t0.elapsed());
                matched += (m.data == payload.as_bytes()) as u32;
                break;
            }
        }
    }
    rtts.sort();
    Ok((matched, rtts.get(rtts.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)))
}
