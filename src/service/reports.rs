//! What each daemon reports: its `STATUS=` line and its metrics, from its own counters.

use cnlink_procmon::{EventKind, MonitorCounters};

use super::daemon::Daemon;
use super::metrics::{BusMetrics, ProcCounters, ProcMetrics, SinkCounters};

/// `cnlink proc`: the monitor's counters to the metrics and the status line.
pub(crate) fn proc(daemon: &mut Daemon, metrics: Option<&ProcMetrics>, m: &MonitorCounters) {
    let by_cpu: Vec<(u32, u64)> =
        m.losses.per_cpu.iter().enumerate().filter(|(_, &n)| n > 0).map(|(c, &n)| (c as u32, n)).collect();
    let c = ProcCounters {
        received: &m.received,
        shown: &m.shown,
        kinds: &EventKind::NAMES,
        lost_seq_gap: m.losses.seq_gap,
        lost_socket_drops: m.losses.socket_drops,
        lost_inexact: m.losses.inexact,
        lost_queue: m.losses.queue,
        lost_by_cpu: &by_cpu,
        overruns: m.overruns,
        queue_depth: m.queue_depth as u64,
        process_table: m.table.live as u64,
    };
    if let Some(m) = metrics {
        m.update(&c);
    }
    daemon.status(&proc_status(&c));
}

fn proc_status(c: &ProcCounters<'_>) -> String {
    let received: u64 = c.received.iter().sum();
    let shown: u64 = c.shown.iter().sum();
    let lost = c.lost_seq_gap + c.lost_socket_drops + c.lost_queue;
    format!(
        "events: {received} received, {shown} shown, {lost} lost ({} overruns); queue {}; {} processes",
        c.overruns, c.queue_depth, c.process_table
    )
}

/// The sink's part of `cnlink proc`'s status line.
pub(crate) fn sink_status(c: &SinkCounters) -> String {
    format!(
        "sink {}: {} acked, {} waiting ({:.1}s), spool {} KiB, {} lost",
        if c.connected { "up" } else { "down" },
        c.acked,
        c.lag_records,
        c.lag.as_secs_f64(),
        c.spool_bytes >> 10,
        c.evicted + c.torn + c.write_dropped
    )
}

/// `cnlink bus`: the core's counters to the metrics and the status line.
pub(crate) fn bus(daemon: &mut Daemon, metrics: Option<&BusMetrics>, stats: &cnlink_bus::BusCounters) {
    if let Some(m) = metrics {
        m.update(stats);
    }
    daemon.status(&format!(
        "{} ids, {} clients, {} users; {} datagrams, {} denied, {} over limits, {} dropped",
        stats.ids,
        stats.clients,
        stats.users,
        stats.received,
        stats.denied,
        stats.over_limit,
        stats.dropped_local + stats.dropped_full
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let c = ProcCounters {
            received: &[3, 4],
            shown: &[1, 1],
            kinds: &["fork", "exec"],
            lost_seq_gap: 2,
            lost_socket_drops: 0,
            lost_inexact: 0,
            lost_queue: 1,
            lost_by_cpu: &[],
            overruns: 1,
            queue_depth: 5,
            process_table: 9,
        };
        assert_eq!(proc_status(&c), "events: 7 received, 2 shown, 3 lost (1 overruns); queue 5; 9 processes");
        let s = SinkCounters {
            connected: false,
            acked: 10,
            lag_records: 4,
            lag: std::time::Duration::from_millis(2500),
            spool_bytes: 8192,
            evicted: 1,
            torn: 1,
            ..Default::default()
        };
        assert_eq!(sink_status(&s), "sink down: 10 acked, 4 waiting (2.5s), spool 8 KiB, 2 lost");
    }
}
