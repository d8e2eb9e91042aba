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
use cnlink_bus::wire::{CtlMsg, NotifyRange};
use cnlink_bus::{Bus, BusClient, BusOptions, Config, Policy, DEFAULT_PORT};

use super::{parse_duration, Format};

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
    Stats(PortArg),
    /// Register ids and answer every message with the same seq, ack + 1 and payload (like cn_test).
    Echo(EchoArgs),
    /// Run a cn_test/ucon-style scenario against a running bus and report what it saw.
    Test(TestArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct PortArg {
    /// The bus daemon's port id.
    #[arg(long, default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    port: u32,
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
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    #[command(flatten)]
    port: PortArg,
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
    port: PortArg,
    /// Name to register under.
    #[arg(long, default_value = "cn_echo")]
    name: String,
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    #[command(flatten)]
    port: PortArg,
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
        Some(BusCmd::Stats(p)) => stats(p.port),
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

fn connect(port: u32) -> anyhow::Result<BusClient> {
    let mut c = BusClient::connect(port).context("opening a NETLINK_USERSOCK socket")?;
    c.stats().with_context(|| format!("no bus answers on port {port:#x} (is `cnlink bus` running?)"))?;
    Ok(c)
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
        ..BusOptions::default()
    };
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
    while !stop.load(Ordering::Relaxed) && !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let entries = connect(a.port.port)?.list()?;
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
                let id = format!("{}:{}", e.id.idx, e.id.val);
                writeln!(out, "{:<15} {:<23} {:>10} {:>10} {:>6}", e.name, id, e.group, e.port, e.uid)?;
            }
        }
        Format::Text => {
            writeln!(out, "Name            ID")?;
            for e in entries {
                writeln!(out, "{:<15} {}:{}", e.name, e.id.idx, e.id.val)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(port: u32) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for (name, v) in connect(port)?.stats()? {
        writeln!(out, "{name:<18} {v}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn echo(a: EchoArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(a.port.port)?;
    for id in &a.ids {
        c.register(*id, &a.name).with_context(|| format!("registering {id}"))?;
    }
    eprintln!(
        "cnlink bus echo: answering {} on bus port {:#x} (my port {})",
        a.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "),
        a.port.port,
        c.port()?
    );
    let stop = stop_flag()?;
    let named: Vec<(CbId, &str)> = a.ids.iter().map(|id| (*id, a.name.as_str())).collect();
    let n = c.serve_echo(&named, Duration::from_secs(1), || !stop.load(Ordering::Relaxed))?;
    for id in &a.ids {
        let _ = c.unregister(*id);
    }
    eprintln!("cnlink bus echo: answered {n} messages");
    Ok(ExitCode::SUCCESS)
}

/// One line of the test report.
fn check(out: &mut impl Write, ok: bool, what: &str) -> std::io::Result<bool> {
    writeln!(out, "{} {what}", if ok { "ok  " } else { "FAIL" })?;
    Ok(ok)
}

fn test(a: TestArgs) -> anyhow::Result<ExitCode> {
    let port = a.port.port;
    let mut out = std::io::stdout().lock();
    let mut watcher = connect(port)?;
    let mut requester = connect(port)?;
    let mut subscriber = connect(port)?;
    let mut agent = connect(port)?;
    let id = a.id;
    let mut all = true;
    // Notifications for the test id, on a group nobody else uses (0xffffffff minus our port).
    let ngroup = u32::MAX - watcher.port()?;
    let req = CtlMsg {
        group: ngroup,
        idx: vec![NotifyRange { first: id.idx, range: 1 }],
        val: vec![NotifyRange { first: id.val, range: 1 }],
    };
    watcher.notify(&req).context("notification request")?;
    all &= check(&mut out, true, &format!("notification request for {id} on group {ngroup:#x}"))?;
    agent.register(id, "cn_test").with_context(|| format!("registering {id} (is it taken?)"))?;
    all &= check(&mut out, true, &format!("registered {id} (group {})", id.idx))?;
    let added = watcher.recv(Some(a.timeout))?;
    all &= check(
        &mut out,
        added.as_ref().is_some_and(|m| m.hdr.id == id && m.hdr.ack == 0),
        "notification: added (ack 0)",
    )?;
    // The agent echoes on a thread, like cn_test's callback.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let agent = std::thread::spawn(move || {
        let r = agent.serve_echo(&[(id, "cn_test")], Duration::from_secs(5), || !stop2.load(Ordering::Relaxed));
        (agent, r)
    });
    let mut rtts = Vec::new();
    let mut matched = 0;
    for i in 0..a.count {
        let payload = format!("counter = {i}\0");
        let t0 = Instant::now();
        let (seq, ack) = requester.send(id, payload.as_bytes())?;
        let deadline = t0 + a.timeout;
        while let Some(m) = requester.recv(Some(deadline.saturating_duration_since(Instant::now())))? {
            if m.hdr.id == id && m.hdr.seq == seq && m.hdr.ack == ack.wrapping_add(1) {
                rtts.push(t0.elapsed());
                matched += (m.data == payload.as_bytes()) as u32;
                break;
            }
        }
    }
    rtts.sort();
    let p50 = rtts.get(rtts.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6);
    all &= check(
        &mut out,
        matched == a.count,
        &format!("{matched}/{} replies with the same seq, ack + 1 and payload; round trip p50 {p50:.0} us", a.count),
    )?;
    stop.store(true, Ordering::Relaxed);
    let (mut agent, r) = agent.join().map_err(|_| anyhow::anyhow!("the agent thread panicked"))?;
    r?;
    // The owner sends on its id with group 0 (the SEND op): the bus looks up group idx, as cn_test's timer does.
    subscriber.join(id.idx)?;
    agent.send_group(0, id, b"counter = 1\0")?;
    let got = subscriber.recv(Some(a.timeout))?;
    all &= check(
        &mut out,
        got.is_some_and(|m| m.hdr.id == id && m.data == b"counter = 1\0"),
        &format!("group {} subscriber got the owner's message (group 0 lookup)", id.idx),
    )?;
    agent.unregister(id)?;
    let removed = watcher.recv(Some(a.timeout))?;
    all &= check(&mut out, removed.is_some_and(|m| m.hdr.id == id && m.hdr.ack == 1), "notification: removed (ack 1)")?;
    watcher.notify(&CtlMsg { group: 0, ..req })?;
    writeln!(out, "{}", if all { "result: PASS" } else { "result: FAIL" })?;
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
