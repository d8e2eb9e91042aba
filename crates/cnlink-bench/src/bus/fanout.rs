//! Throughput and fan-out: a publisher sending as fast as the bus accepts to a group with 1, 8 or 64
//! subscriber processes, counting what each subscriber actually received.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use cnlink::wire::{CbId, CnMsgHdr};
use cnlink_bus::wire::publish_op;
use cnlink_bus::BusClient;
use serde_json::{json, Value};

use super::child::Proc;
use super::{cpu_ns, mono_ns, thread_cpu_ns, unique_port};

/// The group the subscribers join; the publisher's id is `{GROUP, 1}`, so its own sends go to this group.
pub(crate) const GROUP: u32 = 0x4655;
/// The publisher's id.
pub(crate) const PUB_ID: CbId = CbId::new(GROUP, 1);
/// How long a party may take to start.
const START: Duration = Duration::from_secs(30);
/// How long a subscriber may take to drain and report once told to.
const DRAIN: Duration = Duration::from_secs(120);

/// What the throughput runs do.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Rounds.
    pub(crate) rounds: u32,
    /// Data bytes per message (the first 8 carry a counter).
    pub(crate) size: usize,
    /// Messages per fire-and-forget run.
    pub(crate) messages: u64,
    /// Subscriber counts.
    pub(crate) fanout: Vec<u32>,
    /// Offered rate of the paced one-subscriber run, messages/s (0: none).
    pub(crate) paced_rate: u64,
    /// Messages for the acknowledged one-subscriber run (0: none).
    pub(crate) acked_messages: u64,
    /// Receive buffers the subscribers ask for, one set of fan-out runs each (0: system default).
    pub(crate) sub_rcvbuf: Vec<usize>,
    /// Most deliveries due in one run (subscribers × messages): fewer messages for large fan-outs.
    pub(crate) deliveries: u64,
}

/// How the publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The PUBLISH op (SEND without a reply) for its own registered id: fire and forget; the bus fans it out to
    /// the group.
    Send,
    /// PUBLISH like `Send`, paced to this many messages per second.
    Paced(u64),
    /// `BusClient::send_group`: the SEND op, one round trip to the bus per message.
    Acked,
}

impl Mode {
    /// The name in reports.
    pub(crate) fn name(self) -> String {
        match self {
            Mode::Send => "send".into(),
            Mode::Paced(rate) => format!("send@{rate}/s"),
            Mode::Acked => "send_group".into(),
        }
    }
}

/// What one subscriber reported.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubReport {
    /// Messages for the publisher's id it received.
    pub(crate) received: u64,
    /// When it received the first and the last (`CLOCK_MONOTONIC`, ns).
    pub(crate) first_ns: u64,
    /// See `first_ns`.
    pub(crate) last_ns: u64,
    /// Counters skipped (gaps before the last received message).
    pub(crate) missing: u64,
    /// Messages whose counter went backwards.
    pub(crate) out_of_order: u64,
    /// Receive overruns (`ENOBUFS`) it saw.
    pub(crate) overruns: u64,
    /// Messages not for the publisher's id (late control replies), not counted.
    pub(crate) other: u64,
    /// The kernel's drop counter for its socket.
    pub(crate) kernel_drops: u64,
    /// Its CPU time over its whole life, ns.
    pub(crate) cpu_ns: u64,
}

impl SubReport {
    fn parse(line: &str) -> Result<SubReport> {
        let v: Value = serde_json::from_str(line).with_context(|| format!("subscriber report {line:?}"))?;
        let f = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(SubReport {
            received: f("received"),
            first_ns: f("first_ns"),
            last_ns: f("last_ns"),
            missing: f("missing"),
            out_of_order: f("out_of_order"),
            overruns: f("overruns"),
            other: f("other"),
            kernel_drops: f("kernel_drops"),
            cpu_ns: f("cpu_ns"),
        })
    }
}

/// One fan-out run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// What ran.
    pub(crate) spec: Spec,
    /// Round number (0-based).
    pub(crate) round: u32,
    /// Messages the publisher sent.
    pub(crate) sent: u64,
    /// When the publisher started (`CLOCK_MONOTONIC`, ns).
    pub(crate) start_ns: u64,
    /// When its last send returned.
    pub(crate) sent_ns: u64,
    /// The subscribers' reports.
    pub(crate) subs: Vec<SubReport>,
    /// The daemon's `fanout` counter (deliveries queued).
    pub(crate) bus_fanout: u64,
    /// The daemon's `dropped_full` counter (sends a full subscriber socket refused).
    pub(crate) bus_dropped_full: u64,
    /// The kernel's drop counter for the bus's socket.
    pub(crate) bus_kernel_drops: u64,
    /// The daemon's CPU time during the run, ns (all its threads).
    pub(crate) daemon_cpu_ns: u64,
    /// The publisher's CPU time while sending, ns.
    pub(crate) publisher_cpu_ns: u64,
    /// The 1-minute load average when the run started.
    pub(crate) loadavg: f64,
}

impl Run {
    /// Messages all subscribers received together.
    pub(crate) fn received(&self) -> u64 {
        self.subs.iter().map(|s| s.received).sum()
    }

    /// Deliveries lost: sent to every subscriber, not received.
    pub(crate) fn lost(&self) -> u64 {
        (self.sent * self.spec.subscribers as u64).saturating_sub(self.received())
    }

    /// Lost deliveries in percent of those due.
    pub(crate) fn loss_pct(&self) -> f64 {
        100.0 * self.lost() as f64 / (self.sent * self.spec.subscribers as u64).max(1) as f64
    }

    /// Messages per second the publisher got into the bus.
    pub(crate) fn send_rate(&self) -> f64 {
        self.sent as f64 / secs(self.start_ns, self.sent_ns)
    }

    /// Each subscriber's rate: messages it received over the time from the publisher's start to its last one.
    pub(crate) fn sub_rates(&self) -> Vec<f64> {
        self.subs.iter().map(|s| s.received as f64 / secs(self.start_ns, s.last_ns)).collect()
    }

    /// Deliveries per second to all subscribers together, until the last subscriber's last message.
    pub(crate) fn total_rate(&self) -> f64 {
        let end = self.subs.iter().map(|s| s.last_ns).max().unwrap_or(self.sent_ns);
        self.received() as f64 / secs(self.start_ns, end)
    }

    /// Daemon CPU per delivery, ns.
    pub(crate) fn daemon_ns_per_delivery(&self) -> f64 {
        self.daemon_cpu_ns as f64 / self.bus_fanout.max(1) as f64
    }

    /// Machine-readable form.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "subscribers": self.spec.subscribers, "mode": self.spec.mode.name(), "rcvbuf": self.spec.rcvbuf,
            "round": self.round, "loadavg": self.loadavg, "sent": self.sent,
            "publish_secs": secs(self.start_ns, self.sent_ns), "send_rate": self.send_rate(),
            "received": self.received(), "lost": self.lost(), "loss_pct": self.loss_pct(),
            "per_subscriber_rate": self.sub_rates(), "total_rate": self.total_rate(),
            "per_subscriber_received": self.subs.iter().map(|s| s.received).collect::<Vec<_>>(),
            "first_received_after_us": self.subs.iter()
                .map(|s| s.first_ns.saturating_sub(self.start_ns) as f64 / 1000.0).collect::<Vec<_>>(),
            "missing_gaps": self.subs.iter().map(|s| s.missing).sum::<u64>(),
            "out_of_order": self.subs.iter().map(|s| s.out_of_order).sum::<u64>(),
            "overruns": self.subs.iter().map(|s| s.overruns).sum::<u64>(),
            "other": self.subs.iter().map(|s| s.other).sum::<u64>(),
            "subscriber_kernel_drops": self.subs.iter().map(|s| s.kernel_drops).sum::<u64>(),
            "bus_kernel_drops": self.bus_kernel_drops,
            "bus_fanout": self.bus_fanout, "bus_dropped_full": self.bus_dropped_full,
            "daemon_cpu_ns": self.daemon_cpu_ns, "daemon_ns_per_delivery": self.daemon_ns_per_delivery(),
            "publisher_cpu_ns": self.publisher_cpu_ns,
            "publisher_ns_per_message": self.publisher_cpu_ns as f64 / self.sent.max(1) as f64,
            "subscriber_cpu_ns": self.subs.iter().map(|s| s.cpu_ns).collect::<Vec<_>>(),
            "subscriber_ns_per_message": self.subs.iter()
                .map(|s| s.cpu_ns as f64 / s.received.max(1) as f64).collect::<Vec<_>>(),
        })
    }
}

fn secs(from_ns: u64, to_ns: u64) -> f64 {
    (to_ns.saturating_sub(from_ns) as f64 / 1e9).max(1e-9)
}

/// One run's setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spec {
    /// Subscriber processes.
    pub(crate) subscribers: u32,
    /// How the publisher sends.
    pub(crate) mode: Mode,
    /// Messages it sends.
    pub(crate) messages: u64,
    /// Receive buffer the subscribers ask for (0: `BusClient`'s default, `CLIENT_RECV_BUFFER`).
    pub(crate) rcvbuf: usize,
}

impl Spec {
    /// The receive buffer as reported: "client" (`BusClient`'s default) or bytes.
    pub(crate) fn rcvbuf_name(&self) -> String {
        if self.rcvbuf == 0 {
            "client".into()
        } else {
            self.rcvbuf.to_string()
        }
    }
}

/// Every run of a round, in the first round's order: each fan-out with each receive buffer (messages capped so
/// that no run has more than `deliveries` due), then the paced and the acknowledged one-subscriber runs with
/// the first receive buffer.
fn plan(cfg: &Config) -> Vec<Spec> {
    let mut p = Vec::new();
    for &rcvbuf in &cfg.sub_rcvbuf {
        for &n in &cfg.fanout {
            let messages = cfg.messages.min(cfg.deliveries / n.max(1) as u64).max(1);
            p.push(Spec { subscribers: n, mode: Mode::Send, messages, rcvbuf });
        }
    }
    let rcvbuf = cfg.sub_rcvbuf.first().copied().unwrap_or(0);
    if cfg.paced_rate > 0 {
        p.push(Spec { subscribers: 1, mode: Mode::Paced(cfg.paced_rate), messages: cfg.messages, rcvbuf });
    }
    if cfg.acked_messages > 0 {
        p.push(Spec { subscribers: 1, mode: Mode::Acked, messages: cfg.acked_messages, rcvbuf });
    }
    p
}

/// Runs every fan-out every round, in a rotating order; returns the runs and the failed runs' errors.
pub(crate) fn run(cfg: &Config) -> Result<(Vec<Run>, Vec<Value>)> {
    let plan = plan(cfg);
    println!(
        "\n{:<5} {:<17} {:>8} {:>5} {:>9} {:>11} {:>12} {:>12} {:>9} {:>8} {:>9} {:>7}",
        "subs",
        "mode",
        "rcvbuf",
        "round",
        "sent",
        "sent/s",
        "per-sub/s",
        "total/s",
        "lost",
        "loss %",
        "dropfull",
        "ns/dlv"
    );
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for round in 0..cfg.rounds {
        let mut order = plan.clone();
        if !order.is_empty() {
            let k = round as usize % order.len();
            order.rotate_left(k);
        }
        for spec in order {
            let (subs, mode) = (spec.subscribers, spec.mode.name());
            let r = match one(cfg, spec, round) {
                Ok(r) => r,
                Err(e) => {
                    println!("{subs:<5} {mode:<17} {:>8} {round:>5}  failed: {e:#}", spec.rcvbuf_name());
                    failures.push(json!({"subscribers": subs, "mode": mode, "rcvbuf": spec.rcvbuf, "round": round,
                                         "error": format!("{e:#}")}));
                    continue;
                }
            };
            println!(
                "{subs:<5} {mode:<17} {:>8} {round:>5} {:>9} {:>11.0} {:>12.0} {:>12.0} {:>9} {:>8.3} {:>9} {:>7.0}",
                spec.rcvbuf_name(),
                r.sent,
                r.send_rate(),
                super::report::median(&r.sub_rates()),
                r.total_rate(),
                r.lost(),
                r.loss_pct(),
                r.bus_dropped_full,
                r.daemon_ns_per_delivery()
            );
            runs.push(r);
        }
    }
    Ok((runs, failures))
}

/// One run: a fresh daemon, `subs` subscribers, the harness publishing `messages`.
fn one(cfg: &Config, spec: Spec, round: u32) -> Result<Run> {
    let Spec { subscribers: subs, mode, messages, rcvbuf } = spec;
    let loadavg = super::loadavg();
    let port = unique_port();
    let mut daemon = Proc::spawn("daemon", &["__daemon".into(), "--port".into(), port.to_string()])?;
    daemon.ready(START)?;
    let mut procs = Vec::with_capacity(subs as usize);
    for i in 0..subs {
        procs.push(Proc::spawn(
            &format!("subscriber{i}"),
            &[
                "__subscriber".into(),
                "--bus".into(),
                port.to_string(),
                "--group".into(),
                GROUP.to_string(),
                "--idx".into(),
                PUB_ID.idx.to_string(),
                "--val".into(),
                PUB_ID.val.to_string(),
                "--rcvbuf".into(),
                rcvbuf.to_string(),
            ],
        )?);
    }
    for p in &mut procs {
        p.ready(START)?;
    }
    let mut publisher = BusClient::connect(port)?;
    publisher.register(PUB_ID, "bench_pub")?;
    // The STATS answer comes after the bus has routed its whole backlog (64 sends per message at 64 subscribers).
    publisher.set_timeout(DRAIN);
    let mut payload = vec![0xa5; cfg.size.max(8)];

    let cpu0 = cpu_ns(daemon.pid());
    let pub0 = thread_cpu_ns();
    let start_ns = mono_ns();
    for i in 0..messages {
        payload[..8].copy_from_slice(&i.to_ne_bytes());
        if let Mode::Paced(rate) = mode {
            // Ahead of schedule: sleep until this message is due (the timer's slack makes small bursts).
            let due = start_ns + (i as u128 * 1_000_000_000 / rate.max(1) as u128) as u64;
            let now = mono_ns();
            if now < due {
                std::thread::sleep(Duration::from_nanos(due - now));
            }
        }
        match mode {
            Mode::Send | Mode::Paced(_) => {
                let op = publish_op(GROUP, CnMsgHdr { id: PUB_ID, ..Default::default() }, &payload)?;
                publisher.send(CbId::CONNECTOR, &op).map(drop)
            }
            Mode::Acked => publisher.send_group(GROUP, PUB_ID, &payload),
        }
        .with_context(|| format!("publishing message {i}"))?;
    }
    let sent_ns = mono_ns();
    let publisher_cpu_ns = thread_cpu_ns().saturating_sub(pub0);
    // The bus handles its socket in order and sends what a batch of datagrams produced before it receives the
    // next batch: its answer to STATS means every message above has been routed. The counters in that answer
    // were taken before the sends of its own batch, so the final counters come from a second STATS.
    publisher.stats().context("STATS after publishing")?;
    let stats = publisher.stats().context("second STATS after publishing")?;
    let daemon_cpu_ns = cpu_ns(daemon.pid()).saturating_sub(cpu0);
    let stat = |name: &str| stats.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);

    for p in &mut procs {
        p.close_stdin();
    }
    let mut reports = Vec::with_capacity(procs.len());
    for p in &mut procs {
        reports.push(SubReport::parse(&p.line(DRAIN)?)?);
    }
    if reports.iter().any(|r| r.received > messages) {
        bail!("a subscriber counted more messages than were sent");
    }
    Ok(Run {
        spec,
        round,
        sent: messages,
        start_ns,
        sent_ns,
        subs: reports,
        bus_fanout: stat("fanout"),
        bus_dropped_full: stat("dropped_full"),
        bus_kernel_drops: super::netlink_drops(port).unwrap_or(0),
        daemon_cpu_ns,
        publisher_cpu_ns,
        loadavg,
    })
}
