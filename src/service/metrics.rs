//! Prometheus metrics of the daemons: one registry, filled by the daemons through small typed handles
//! ([`ProcMetrics`], [`BusMetrics`], [`SinkMetrics`]) and served by [`super::http`].
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

    /// Registers the metrics of a sink that ships events elsewhere (`cnlink proc` with a sink, `cnlink collect`).
    #[allow(dead_code)] // The sink and `cnlink collect` are not in the binary yet; this is their hook.
    pub(crate) fn sink(&mut self) -> SinkMetrics {
        SinkMetrics::register(self.registry.sub_registry_with_prefix("sink"))
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
        _ => "A counter of the bus core (see cnlink bus stats)",
    }
}

/// A bus daemon's metrics: one per counter of the core's `BusCounters`, named after it.
#[derive(Debug, Clone)]
pub(crate) struct BusMetrics {
    counters: Vec<(&'static str, Counter)>,
    gauges: Vec<(&'static str, Gauge)>,
}

impl BusMetrics {
    fn register(r: &mut Registry) -> BusMetrics {
        let mut m = BusMetrics { counters: Vec::new(), gauges: Vec::new() };
        for &name in cnlink_bus::BusCounters::NAMES {
            if BUS_GAUGES.contains(&name) {
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
            if let Some((_, c)) = self.counters.iter().find(|(n, _)| *n == name) {
                mirror(c, value);
            } else if let Some((_, g)) = self.gauges.iter().find(|(n, _)| *n == name) {
                gauge(g, value);
            }
        }
    }
}

/// A sink's metrics; the sink calls these as it works.
#[derive(Debug, Clone)]
#[allow(dead_code)] // The sink and `cnlink collect` are not in the binary yet; this is their hook.
pub(crate) struct SinkMetrics {
    lag: Gauge<f64, AtomicU64>,
    spool_bytes: Gauge,
    publishes: Counter,
    acks: Counter,
}

#[allow(dead_code)] // The sink and `cnlink collect` are not in the binary yet; this is their hook.
impl SinkMetrics {
    fn register(r: &mut Registry) -> SinkMetrics {
        let m = SinkMetrics {
            lag: Gauge::default(),
            spool_bytes: Gauge::default(),
            publishes: Counter::default(),
            acks: Counter::default(),
        };
        r.register("lag_seconds", "Age of the oldest event not yet acknowledged by the sink's server", m.lag.clone());
        r.register("spool_bytes", "Bytes spooled on disk waiting to be published", m.spool_bytes.clone());
        r.register("publishes", "Messages published to the sink's server", m.publishes.clone());
        r.register("acks", "Publishes acknowledged by the sink's server", m.acks.clone());
        m
    }

    /// Sets the age of the oldest unacknowledged event.
    pub(crate) fn set_lag(&self, lag: std::time::Duration) {
        self.lag.set(lag.as_secs_f64());
    }

    /// Sets the spool's size.
    pub(crate) fn set_spool_bytes(&self, bytes: u64) {
        gauge(&self.spool_bytes, bytes);
    }

    /// Counts `n` messages published.
    pub(crate) fn published(&self, n: u64) {
        self.publishes.inc_by(n);
    }

    /// Counts `n` publishes acknowledged.
    pub(crate) fn acked(&self, n: u64) {
        self.acks.inc_by(n);
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
        let stats = cnlink_bus::BusCounters { received: 9, clients: 2, ..Default::default() };
        b.update(&stats);
        let t = text(&m);
        assert!(t.contains("cnlink_bus_received_total 9"), "{t}");
        assert!(t.contains("# TYPE cnlink_bus_clients gauge\ncnlink_bus_clients 2"), "{t}");
        for name in cnlink_bus::BusCounters::NAMES {
            assert!(t.contains(&format!("cnlink_bus_{name}")), "{name} missing in\n{t}");
        }
    }

    #[test]
    fn sink_hook() {
        let mut m = Metrics::new();
        let s = m.sink();
        s.published(3);
        s.acked(2);
        s.set_spool_bytes(4096);
        s.set_lag(std::time::Duration::from_millis(1500));
        let t = text(&m);
        assert!(t.contains("cnlink_sink_publishes_total 3"), "{t}");
        assert!(t.contains("cnlink_sink_acks_total 2"), "{t}");
        assert!(t.contains("cnlink_sink_spool_bytes 4096"), "{t}");
        assert!(t.contains("cnlink_sink_lag_seconds 1.5"), "{t}");
    }
}
