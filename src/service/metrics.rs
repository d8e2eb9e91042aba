//! Prometheus metrics of the daemons: one registry, filled by the daemons through small typed handles
//! ([`ProcMetrics`], [`BusMetrics`], [`SinkMetrics`], [`CollectMetrics`]) and served by [`super::http`].
//!
//! Every label set is bounded by design: event kinds and loss causes are fixed lists, CPUs are the machine's.
//! There are no pid, comm, user or cgroup labels. The daemons keep their own plain counters and copy them here
//! from their main loop ([`ProcMetrics::update`], [`BusMetrics::update`]), so the hot paths do no atomic
//! operations for metrics.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A label set of one fixed-string label.
type Label = [(&'static str, &'static str); 1];
/// The `cpu` label.
type CpuLabel = [(&'static str, u32); 1];

/// The metrics of one `cnlink` process, before serving.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with the `cnlink_` prefix and a `cnlink_build_info` gauge.
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cnlink");
        let info = Family::<Label, Gauge>::default();
        info.get_or_create(&[("version", env!("CARGO_PKG_VERSION"))]).set(1);
        registry.register("build_info", "The cnlink version, as a label; always 1", info);
        Metrics { registry }
    }

    /// Registers the process monitor's metrics (`cnlink proc`).
    pub(crate) fn proc(&mut self) -> ProcMetrics {
        ProcMetrics::register(self.registry.sub_registry_with_prefix("proc"))
    }

    /// Registers a bus daemon's metrics (`cnlink bus`).
    pub(crate) fn bus(&mut self) -> BusMetrics {
        BusMetrics::register(self.registry.sub_registry_with_prefix("bus"))
    }

    /// Registers the metrics of the sink that ships events to NATS (`cnlink proc --sink`).
    pub(crate) fn sink(&mut self) -> SinkMetrics {
        SinkMetrics::register(self.registry.sub_registry_with_prefix("sink"))
    }

    /// Registers the collector's metrics (`cnlink collect`).
    pub(crate) fn collect(&mut self) -> CollectMetrics {
        CollectMetrics::register(self.registry.sub_registry_with_prefix("collect"))
    }

    /// The registry, for serving.
    pub(crate) fn into_registry(self) -> Registry {
        self.registry
    }

    /// The registry, for encoding in tests.
    #[cfg(test)]
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// Sets a counter that mirrors a monotonic count kept elsewhere (a counter can only grow).
fn mirror(counter: &Counter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Sets a gauge from an unsigned count.
fn gauge(gauge: &Gauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// The process monitor's counters at one moment, as [`ProcMetrics::update`] takes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcCounters<'a> {
    /// Events received, by kind, in the order of `kinds`.
    pub(crate) received: &'a [u64],
    /// Events shown (passed the filters), by kind.
    pub(crate) shown: &'a [u64],
    /// The kind names, in column order (a fixed list).
    pub(crate) kinds: &'a [&'static str],
    /// Events lost to per-CPU sequence gaps.
    pub(crate) lost_seq_gap: u64,
    /// Events lost according to the socket's kernel drop counter (kernel-filtered subscriptions).
    pub(crate) lost_socket_drops: u64,
    /// Events dropped because the monitor's own queue was full.
    pub(crate) lost_queue: u64,
    /// Loss reports whose count was a lower bound or unknown.
    pub(crate) lost_inexact: u64,
    /// Sequence-gap losses by the CPU that sent the next message.
    pub(crate) lost_by_cpu: &'a [(u32, u64)],
    /// `ENOBUFS` overruns of the socket.
    pub(crate) overruns: u64,
    /// Events between the receive thread and the main thread now.
    pub(crate) queue_depth: u64,
    /// Processes in the process table now.
    pub(crate) process_table: u64,
}

/// The process monitor's metrics.
#[derive(Debug, Clone)]
pub(crate) struct ProcMetrics {
    received: Family<Label, Counter>,
    shown: Family<Label, Counter>,
    lost: Family<Label, Counter>,
    lost_by_cpu: Family<CpuLabel, Counter>,
    lost_inexact: Counter,
    overruns: Counter,
    queue_depth: Gauge,
    process_table: Gauge,
}

impl ProcMetrics {
    fn register(r: &mut Registry) -> ProcMetrics {
        let m = ProcMetrics {
            received: Family::default(),
            shown: Family::default(),
            lost: Family::default(),
            lost_by_cpu: Family::default(),
            lost_inexact: Counter::default(),
            overruns: Counter::default(),
            queue_depth: Gauge::default(),
            process_table: Gauge::default(),
        };
        r.register("events_received", "Process events received from the kernel, by kind", m.received.clone());
        r.register("events_shown", "Process events that passed the filters and were output, by kind", m.shown.clone());
        r.register(
            "events_lost",
            "Process events lost, by cause: seq_gap (per-CPU sequence gaps), socket_drops (the socket's kernel drop \
             counter, kernel-filtered subscriptions), queue (the monitor's queue was full)",
            m.lost.clone(),
        );
        r.register(
            "events_lost_by_cpu",
            "Process events lost to sequence gaps, by the CPU that sent them",
            m.lost_by_cpu.clone(),
        );
        r.register(
            "loss_reports_inexact",
            "Loss reports whose count was a lower bound or unknown (a CPU the monitor could not cover, or no drop \
             counter); while 0, events_lost is exact",
            m.lost_inexact.clone(),
        );
        r.register("overruns", "Receive buffer overruns (ENOBUFS) of the connector socket", m.overruns.clone());
        r.register("queue_depth", "Events queued between the receive thread and the output now", m.queue_depth.clone());
        r.register("process_table_size", "Processes in the monitor's process table now", m.process_table.clone());
        for cause in ["seq_gap", "socket_drops", "queue"] {
            let _ = m.lost.get_or_create(&[("cause", cause)]);
        }
        m
    }

    /// Copies the monitor's counters.
    pub(crate) fn update(&self, c: &ProcCounters<'_>) {
        for (i, &kind) in c.kinds.iter().enumerate() {
            mirror(&self.received.get_or_create(&[("kind", kind)]), c.received.get(i).copied().unwrap_or(0));
            mirror(&self.shown.get_or_create(&[("kind", kind)]), c.shown.get(i).copied().unwrap_or(0));
        }
        mirror(&self.lost.get_or_create(&[("cause", "seq_gap")]), c.lost_seq_gap);
        mirror(&self.lost.get_or_create(&[("cause", "socket_drops")]), c.lost_socket_drops);
        mirror(&self.lost.get_or_create(&[("cause", "queue")]), c.lost_queue);
        for &(cpu, n) in c.lost_by_cpu {
            mirror(&self.lost_by_cpu.get_or_create(&[("cpu", cpu)]), n);
        }
        mirror(&self.lost_inexact, c.lost_inexact);
        mirror(&self.overruns, c.overruns);
        gauge(&self.queue_depth, c.queue_depth);
        gauge(&self.process_table, c.process_table);
    }
}

/// The bus core's counters that are levels, not running totals.
const BUS_GAUGES: &[&str] = &["ids", "subscriptions", "notify_requests", "routes", "clients", "users"];

/// Help texts for the bus core's counters (`cnlink_bus::BusCounters::NAMES`); a counter added there later is exported
/// with a generic help text.
fn bus_help(name: &str) -> &'static str {
    match name {
        "received" => "Datagrams handled",
        "malformed" => "Datagrams dropped as malformed",
        "bad_control" => "Control requests that did not decode",
        "control" => "Control requests handled",
        "unroutable" => "Messages to ids nobody registered",
        "denied" => "Requests refused as not permitted",
        "over_limit" => "Requests refused by a per-user limit",
        "notify_dedup" => "Notification requests that repeated a stored one",
        "delivered_local" => "Messages handed to in-daemon callbacks",
        "dropped_local" => "Deliveries to in-daemon callbacks dropped",
        "forwarded" => "Messages forwarded to remote owners",
        "replies_routed" => "Replies routed back to requesters",
        "route_collisions" => "Reply routes replaced by a request with the same id, seq and ack",
        "routes_expired" => "Reply routes that expired unanswered",
        "fanout" => "Messages queued to group subscribers, one per subscriber",
        "esrch" => "Group sends nobody listened to",
        "notifications" => "Notifications queued, one per subscriber",
        "dropped_full" => "Sends refused by a full receiver",
        "clients_gone" => "Clients found gone and cleaned up",
        "ids" => "Registered ids now",
        "subscriptions" => "Group subscriptions now",
        "notify_requests" => "Stored notification requests now",
        "routes" => "Reply routes waiting now",
        "clients" => "Client sockets holding state now",
        "users" => "Users holding anything now",
        "replies_unrouted" => "Messages of an id's owner that answered no waiting request, dropped",
        "routes_busy" => "Requests refused because another socket waits for a reply to the same id, seq and ack",
        "routes_evicted" => "Reply routes dropped to make room for a newer request of the same user",
        "overruns" => "Receive buffer overruns (ENOBUFS) of the bus's own socket",
        "log_dropped" => "Log lines dropped because the log queue was full",
        "callback_panics" => "Panics caught in in-daemon callbacks",
        "unwatched" => "Clients whose process could not be watched; their socket is checked instead",
        "watched" => "Clients whose process is watched",
        _ => "A counter of the bus core (see cnlink bus stats)",
    }
}

/// The prefix of the core's per-op counters (`op_register`, ...), exported as one family with an `op` label.
const BUS_OP_PREFIX: &str = "op_";

/// A bus daemon's metrics: one per counter of the core's `BusCounters`, named after it, and the per-op counters
/// as `ops_total{op="register"}` etc.
#[derive(Debug, Clone)]
pub(crate) struct BusMetrics {
    counters: Vec<(&'static str, Counter)>,
    gauges: Vec<(&'static str, Gauge)>,
    ops: Family<Label, Counter>,
}

impl BusMetrics {
    fn register(r: &mut Registry) -> BusMetrics {
        let mut m = BusMetrics { counters: Vec::new(), gauges: Vec::new(), ops: Family::default() };
        r.register("ops", "Control requests that decoded, by op (granted or refused)", m.ops.clone());
        for &name in cnlink_bus::BusCounters::NAMES {
            if let Some(op) = name.strip_prefix(BUS_OP_PREFIX) {
                let _ = m.ops.get_or_create(&[("op", op)]);
            } else if BUS_GAUGES.contains(&name) {
                let g = Gauge::default();
                r.register(name, bus_help(name), g.clone());
                m.gauges.push((name, g));
            } else {
                let c = Counter::default();
                r.register(name, bus_help(name), c.clone());
                m.counters.push((name, c));
            }
        }
        m
    }

    /// Copies the core's counters.
    pub(crate) fn update(&self, stats: &cnlink_bus::BusCounters) {
        for (&name, value) in cnlink_bus::BusCounters::NAMES.iter().zip(stats.values()) {
            if let Some(op) = name.strip_prefix(BUS_OP_PREFIX) {
                mirror(&self.ops.get_or_create(&[("op", op)]), value);
            } else if let Some((_, c)) = self.counters.iter().find(|(n, _)| *n == name) {
                mirror(c, value);
            } else if let Some((_, g)) = self.gauges.iter().find(|(n, _)| *n == name) {
                gauge(g, value);
            }
        }
    }
}

/// A sink's counters at one moment, as [`SinkMetrics::update`] takes them (`cnlink proc --sink`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SinkCounters {
    /// Connected, with the stream ready.
    pub(crate) connected: bool,
    /// Publishes sent (repeats included).
    pub(crate) published: u64,
    /// Publishes acknowledged.
    pub(crate) acked: u64,
    /// Failures (connect, stream, publish, ack), each followed by a retry.
    pub(crate) errors: u64,
    /// Records written to the spool and not yet acknowledged.
    pub(crate) lag_records: u64,
    /// Age of the oldest of them.
    pub(crate) lag: std::time::Duration,
    /// Bytes of the spool's segment files.
    pub(crate) spool_bytes: u64,
    /// The most bytes the spool held since the start.
    pub(crate) spool_high_water_bytes: u64,
    /// Records evicted from the full spool before they were acknowledged (this boot).
    pub(crate) evicted: u64,
    /// Records lost to a torn or damaged spool record (this boot).
    pub(crate) torn: u64,
    /// Records dropped because the spool could not be written (a full disk; this boot).
    pub(crate) write_dropped: u64,
}

/// A sink's metrics.
#[derive(Debug, Clone)]
pub(crate) struct SinkMetrics {
    connected: Gauge,
    lag: Gauge<f64, AtomicU64>,
    lag_records: Gauge,
    spool_bytes: Gauge,
    spool_high_water: Gauge,
    publishes: Counter,
    acks: Counter,
    errors: Counter,
    lost: Family<Label, Counter>,
}

impl SinkMetrics {
    fn register(r: &mut Registry) -> SinkMetrics {
        let m = SinkMetrics {
            connected: Gauge::default(),
            lag: Gauge::default(),
            lag_records: Gauge::default(),
            spool_bytes: Gauge::default(),
            spool_high_water: Gauge::default(),
            publishes: Counter::default(),
            acks: Counter::default(),
            errors: Counter::default(),
            lost: Family::default(),
        };
        r.register("connected", "1 when connected to the sink's server with the stream ready", m.connected.clone());
        r.register("lag_seconds", "Age of the oldest event not yet acknowledged by the sink's server", m.lag.clone());
        r.register("lag_records", "Records spooled and not yet acknowledged", m.lag_records.clone());
        r.register("spool_bytes", "Bytes spooled on disk waiting to be published", m.spool_bytes.clone());
        r.register(
            "spool_high_water_bytes",
            "The most bytes the spool held since the start",
            m.spool_high_water.clone(),
        );
        r.register("publishes", "Messages published to the sink's server", m.publishes.clone());
        r.register("acks", "Publishes acknowledged by the sink's server", m.acks.clone());
        r.register(
            "errors",
            "Failures to connect, create the stream, publish or get an ack (each retried)",
            m.errors.clone(),
        );
        r.register(
            "records_lost",
            "Records lost between the monitor and the server, by cause: spool_evicted (the spool was full), spool_torn \
             (a torn or damaged spool record), write_dropped (the spool could not be written: a full disk)",
            m.lost.clone(),
        );
        for cause in ["spool_evicted", "spool_torn", "write_dropped"] {
            let _ = m.lost.get_or_create(&[("cause", cause)]);
        }
        m
    }

    /// Copies the sink's counters.
    pub(crate) fn update(&self, c: &SinkCounters) {
        gauge(&self.connected, u64::from(c.connected));
        self.lag.set(c.lag.as_secs_f64());
        gauge(&self.lag_records, c.lag_records);
        gauge(&self.spool_bytes, c.spool_bytes);
        gauge(&self.spool_high_water, c.spool_high_water_bytes);
        mirror(&self.publishes, c.published);
        mirror(&self.acks, c.acked);
        mirror(&self.errors, c.errors);
        mirror(&self.lost.get_or_create(&[("cause", "spool_evicted")]), c.evicted);
        mirror(&self.lost.get_or_create(&[("cause", "spool_torn")]), c.torn);
        mirror(&self.lost.get_or_create(&[("cause", "write_dropped")]), c.write_dropped);
    }
}

/// The collector's metrics (`cnlink collect`).
#[derive(Debug, Clone)]
pub(crate) struct CollectMetrics {
    messages: Family<Label, Counter>,
}

impl CollectMetrics {
    fn register(r: &mut Registry) -> CollectMetrics {
        let m = CollectMetrics { messages: Family::default() };
        r.register(
            "messages",
            "Messages taken from the stream, by kind: event, ledger, malformed (neither; acknowledged and skipped)",
            m.messages.clone(),
        );
        for kind in ["event", "ledger", "malformed"] {
            let _ = m.messages.get_or_create(&[("kind", kind)]);
        }
        m
    }

    /// Counts one message of `kind` (`event`, `ledger` or `malformed`).
    pub(crate) fn message(&self, kind: &'static str) {
        self.messages.get_or_create(&[("kind", kind)]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, m.registry()).unwrap();
        s
    }

    #[test]
    fn proc_counters_are_mirrored_with_bounded_labels() {
        let mut m = Metrics::new();
        let p = m.proc();
        let kinds = ["fork", "exec"];
        let mut c = ProcCounters {
            received: &[5, 3],
            shown: &[4, 3],
            kinds: &kinds,
            lost_seq_gap: 2,
            lost_socket_drops: 0,
            lost_inexact: 0,
            lost_queue: 1,
            lost_by_cpu: &[(1, 2)],
            overruns: 1,
            queue_depth: 7,
            process_table: 42,
        };
        p.update(&c);
        c.received = &[6, 3];
        c.queue_depth = 0;
        p.update(&c);
        let t = text(&m);
        for line in [
            "cnlink_proc_events_received_total{kind=\"fork\"} 6",
            "cnlink_proc_events_shown_total{kind=\"exec\"} 3",
            "cnlink_proc_events_lost_total{cause=\"seq_gap\"} 2",
            "cnlink_proc_events_lost_total{cause=\"queue\"} 1",
            "cnlink_proc_events_lost_total{cause=\"socket_drops\"} 0",
            "cnlink_proc_events_lost_by_cpu_total{cpu=\"1\"} 2",
            "cnlink_proc_overruns_total 1",
            "cnlink_proc_queue_depth 0",
            "cnlink_proc_process_table_size 42",
            "cnlink_build_info{version=\"",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
    }

    #[test]
    fn every_bus_counter_is_exported() {
        let mut m = Metrics::new();
        let b = m.bus();
        let stats = cnlink_bus::BusCounters { received: 9, clients: 2, op_register: 3, ..Default::default() };
        b.update(&stats);
        let t = text(&m);
        assert!(t.contains("cnlink_bus_received_total 9"), "{t}");
        assert!(t.contains("# TYPE cnlink_bus_clients gauge\ncnlink_bus_clients 2"), "{t}");
        assert!(t.contains("cnlink_bus_ops_total{op=\"register\"} 3"), "{t}");
        for name in cnlink_bus::BusCounters::NAMES {
            let exported = match name.strip_prefix(BUS_OP_PREFIX) {
                Some(op) => format!("cnlink_bus_ops_total{{op=\"{op}\"}}"),
                None => format!("cnlink_bus_{name}"),
            };
            assert!(t.contains(&exported), "{name} missing in\n{t}");
        }
    }

    #[test]
    fn sink_counters_are_mirrored() {
        let mut m = Metrics::new();
        let s = m.sink();
        let mut c = SinkCounters {
            connected: true,
            published: 3,
            acked: 2,
            spool_bytes: 4096,
            lag: std::time::Duration::from_millis(1500),
            evicted: 7,
            ..Default::default()
        };
        s.update(&c);
        c.published = 5;
        s.update(&c);
        let collect = m.collect();
        collect.message("event");
        collect.message("malformed");
        let t = text(&m);
        for line in [
            "cnlink_sink_publishes_total 5",
            "cnlink_sink_acks_total 2",
            "cnlink_sink_spool_bytes 4096",
            "cnlink_sink_lag_seconds 1.5",
            "cnlink_sink_connected 1",
            "cnlink_sink_records_lost_total{cause=\"spool_evicted\"} 7",
            "cnlink_sink_records_lost_total{cause=\"write_dropped\"} 0",
            "cnlink_collect_messages_total{kind=\"event\"} 1",
            "cnlink_collect_messages_total{kind=\"ledger\"} 0",
            "cnlink_collect_messages_total{kind=\"malformed\"} 1",
        ] {
            assert!(t.contains(line), "missing {line:?} in\n{t}");
        }
    }
}
