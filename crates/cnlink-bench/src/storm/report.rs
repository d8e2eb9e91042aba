//! Results of one listener run, medians across rounds, and the printed and JSON reports.

use serde_json::{json, Value};

use super::sink::SinkFigures;

/// The outcome of one listener facing one storm.
#[derive(Clone, Debug)]
pub(crate) struct RunResult {
    /// Listener name.
    pub(crate) listener: &'static str,
    /// Round number (0-based).
    pub(crate) round: u32,
    /// Children the storm created.
    pub(crate) children: u64,
    /// Children created per second.
    pub(crate) rate: f64,
    /// Fork events matched to created children.
    pub(crate) forks_matched: u64,
    /// Exit events matched to created children.
    pub(crate) exits_matched: u64,
    /// Event lines the listener printed (all kinds, all processes).
    pub(crate) events: u64,
    /// Listener CPU time (user + system), microseconds.
    pub(crate) cpu_us: u64,
    /// Listener peak RSS, KiB.
    pub(crate) max_rss_kib: u64,
    /// Kernel-side drops at the listener's socket.
    pub(crate) kernel_drops: u64,
    /// Events the listener itself reported lost.
    pub(crate) lost_reported: u64,
    /// Overruns (ENOBUFS) the listener reported.
    pub(crate) overruns: u64,
    /// Seconds from the storm's end until the listener had printed a marker's exit.
    pub(crate) drain_secs: f64,
    /// Seconds from SIGINT until it exited (a sink drains its spool then).
    pub(crate) stop_secs: f64,
    /// The sink's figures (the `sink` listener only).
    pub(crate) sink: Option<SinkFigures>,
    /// For a recorder: how fast its recording replays.
    pub(crate) replay: Option<ReplaySpeed>,
}

/// `cnlink replay --speed max` of a recorder's recording to `/dev/null`, in both formats.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplaySpeed {
    /// Events the replay printed.
    pub(crate) events: u64,
    /// JSON: wall-clock seconds and CPU microseconds (all threads).
    pub(crate) json: (f64, u64),
    /// Text: wall-clock seconds and CPU microseconds.
    pub(crate) text: (f64, u64),
}

impl ReplaySpeed {
    /// Events per wall-clock second, JSON and text.
    pub(crate) fn rates(&self) -> (f64, f64) {
        let eps = |s: f64| self.events as f64 / s.max(1e-9);
        (eps(self.json.0), eps(self.text.0))
    }

    /// Machine-readable form.
    pub(crate) fn to_json(self) -> Value {
        let (json_eps, text_eps) = self.rates();
        let per = |us: u64| us as f64 / self.events.max(1) as f64;
        json!({
            "events": self.events, "json_s": self.json.0, "text_s": self.text.0,
            "json_events_per_s": json_eps.round(), "text_events_per_s": text_eps.round(),
            "json_cpu_us_per_event": per(self.json.1), "text_cpu_us_per_event": per(self.text.1),
        })
    }
}

impl RunResult {
    /// Percentage of the storm's fork events the listener did not print.
    pub(crate) fn fork_loss_pct(&self) -> f64 {
        loss(self.children, self.forks_matched)
    }

    /// Percentage of the storm's exit events the listener did not print.
    pub(crate) fn exit_loss_pct(&self) -> f64 {
        loss(self.children, self.exits_matched)
    }

    /// Events lost, forks and exits together.
    pub(crate) fn lost(&self) -> u64 {
        2 * self.children - self.forks_matched - self.exits_matched
    }

    /// CPU microseconds per printed event.
    pub(crate) fn cpu_per_event(&self) -> f64 {
        self.cpu_us as f64 / self.events.max(1) as f64
    }

    /// Events per second from the storm's start until they were all out (printed, or acknowledged by the sink's
    /// server): every event the listener output, over the storm's time, the drain and the stop.
    pub(crate) fn end_to_end_rate(&self) -> f64 {
        let storm = self.children as f64 / self.rate.max(1e-9);
        self.events as f64 / (storm + self.drain_secs + self.stop_secs).max(1e-9)
    }

    /// Machine-readable form.
    pub(crate) fn to_json(&self) -> Value {
        let sink = self.sink.map(|s| {
            json!({
                "spool_high_water_bytes": s.spool_high_water_bytes, "audit_complete": s.audit_complete,
                "audit_missing": s.audit_missing, "broker_cpu_us": s.broker_cpu_us,
            })
        });
        json!({
            "events_per_s_end_to_end": self.end_to_end_rate().round(), "stop_s": self.stop_secs, "sink": sink,
            "listener": self.listener, "round": self.round, "children": self.children,
            "rate_per_s": self.rate.round(), "forks_matched": self.forks_matched,
            "exits_matched": self.exits_matched, "fork_loss_pct": self.fork_loss_pct(),
            "exit_loss_pct": self.exit_loss_pct(), "events_printed": self.events, "cpu_us": self.cpu_us,
            "cpu_us_per_event": self.cpu_per_event(), "max_rss_kib": self.max_rss_kib,
            "kernel_drops": self.kernel_drops, "lost_reported": self.lost_reported,
            "overruns": self.overruns, "drain_s": self.drain_secs,
            "replay": self.replay.map(ReplaySpeed::to_json),
        })
    }
}

fn loss(created: u64, matched: u64) -> f64 {
    if created == 0 {
        return 0.0;
    }
    100.0 * created.saturating_sub(matched) as f64 / created as f64
}

/// The header of the per-run table.
pub(crate) const HEADER: &str = "listener      round  children   rate/s  fork-loss%  exit-loss%    lost  events  µs/event  maxRSS-MiB  kdrops  reported  e2e-ev/s";

/// One row of the per-run table.
pub(crate) fn row(r: &RunResult) -> String {
    format!(
        "{:<13} {:>5} {:>9} {:>8.0} {:>11.3} {:>11.3} {:>7} {:>7} {:>9.2} {:>11.1} {:>7} {:>9} {:>9.0}{}",
        r.listener,
        r.round,
        r.children,
        r.rate,
        r.fork_loss_pct(),
        r.exit_loss_pct(),
        r.lost(),
        r.events,
        r.cpu_per_event(),
        r.max_rss_kib as f64 / 1024.0,
        r.kernel_drops,
        r.lost_reported + r.overruns,
        r.end_to_end_rate(),
        r.sink.map_or_else(String::new, |s| format!(
            "  [sink: spool high-water {:.1} MiB, audit {} ({} missing), server CPU {:.2} µs/event]",
            s.spool_high_water_bytes as f64 / (1 << 20) as f64,
            if s.audit_complete { "complete" } else { "INCOMPLETE" },
            s.audit_missing,
            s.broker_cpu_us as f64 / r.events.max(1) as f64
        )),
    )
}

/// Medians of one listener's runs.
#[derive(Clone, Debug)]
pub(crate) struct Medians {
    /// Listener name.
    pub(crate) listener: &'static str,
    /// Number of runs.
    pub(crate) runs: usize,
    /// Median storm rate, children/s.
    pub(crate) rate: f64,
    /// Median fork loss %.
    pub(crate) fork_loss_pct: f64,
    /// Median exit loss %.
    pub(crate) exit_loss_pct: f64,
    /// Worst run's events lost (forks + exits).
    pub(crate) worst_lost: u64,
    /// Median CPU µs per event.
    pub(crate) cpu_per_event: f64,
    /// Largest peak RSS, KiB.
    pub(crate) max_rss_kib: u64,
    /// Median events per second end to end.
    pub(crate) end_to_end_rate: f64,
    /// The sink's: the largest spool high-water mark (bytes), runs whose audit was complete, the most records
    /// missing from a stream, and the server's median CPU µs per event.
    pub(crate) sink: Option<(u64, usize, u64, f64)>,
    /// For a recorder: median replay rates, events per second, JSON and text.
    pub(crate) replay_eps: Option<(f64, f64)>,
}

impl Medians {
    /// Medians over `runs` (all of one listener).
    pub(crate) fn of(listener: &'static str, runs: &[&RunResult]) -> Medians {
        let m = |f: fn(&RunResult) -> f64| crate::common::median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        Medians {
            listener,
            runs: runs.len(),
            rate: m(|r| r.rate),
            fork_loss_pct: m(RunResult::fork_loss_pct),
            exit_loss_pct: m(RunResult::exit_loss_pct),
            worst_lost: runs.iter().map(|r| r.lost()).max().unwrap_or(0),
            cpu_per_event: m(RunResult::cpu_per_event),
            max_rss_kib: runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0),
            end_to_end_rate: m(RunResult::end_to_end_rate),
            sink: runs.iter().any(|r| r.sink.is_some()).then(|| {
                let figures: Vec<(SinkFigures, u64)> =
                    runs.iter().filter_map(|r| r.sink.map(|s| (s, r.events))).collect();
                let broker =
                    figures.iter().map(|(s, e)| s.broker_cpu_us as f64 / (*e).max(1) as f64).collect::<Vec<_>>();
                (
                    figures.iter().map(|(s, _)| s.spool_high_water_bytes).max().unwrap_or(0),
                    figures.iter().filter(|(s, _)| s.audit_complete).count(),
                    figures.iter().map(|(s, _)| s.audit_missing).max().unwrap_or(0),
                    crate::common::median(&broker),
                )
            }),
            replay_eps: runs.iter().all(|r| r.replay.is_some()).then(|| {
                let rates: Vec<(f64, f64)> = runs.iter().filter_map(|r| Some(r.replay?.rates())).collect();
                let med = |f: fn(&(f64, f64)) -> f64| crate::common::median(&rates.iter().map(f).collect::<Vec<_>>());
                (med(|r| r.0), med(|r| r.1))
            }),
        }
    }

    /// Machine-readable form, with the CPU ratio to the floor when known.
    pub(crate) fn to_json(&self, floor: Option<f64>) -> Value {
        json!({
            "listener": self.listener, "runs": self.runs, "rate_per_s": self.rate.round(),
            "fork_loss_pct": self.fork_loss_pct, "exit_loss_pct": self.exit_loss_pct,
            "worst_run_events_lost": self.worst_lost, "cpu_us_per_event": self.cpu_per_event,
            "cpu_ratio_to_cloop": floor.map(|f| self.cpu_per_event / f), "max_rss_kib": self.max_rss_kib,
            "events_per_s_end_to_end": self.end_to_end_rate.round(),
            "sink": self.sink.map(|(high_water, complete, missing, broker)| json!({
                "spool_high_water_bytes_max": high_water, "audits_complete": complete,
                "audit_missing_max": missing, "broker_cpu_us_per_event": broker,
            })),
            "replay_json_events_per_s": self.replay_eps.map(|r| r.0.round()),
            "replay_text_events_per_s": self.replay_eps.map(|r| r.1.round()),
        })
    }
}

/// The header of the medians table.
pub(crate) const MEDIAN_HEADER: &str =
    "listener      runs   rate/s  fork-loss%  exit-loss%  worst-lost  µs/event  ×cloop  maxRSS-MiB  e2e-ev/s";

/// One row of the medians table; `floor` is the C loop's median µs/event.
pub(crate) fn median_row(m: &Medians, floor: Option<f64>) -> String {
    let ratio = floor.map_or_else(|| "-".to_string(), |f| format!("{:.2}", m.cpu_per_event / f));
    format!(
        "{:<13} {:>4} {:>8.0} {:>11.3} {:>11.3} {:>11} {:>9.2} {:>7} {:>11.1} {:>9.0}",
        m.listener,
        m.runs,
        m.rate,
        m.fork_loss_pct,
        m.exit_loss_pct,
        m.worst_lost,
        m.cpu_per_event,
        ratio,
        m.max_rss_kib as f64 / 1024.0,
        m.end_to_end_rate,
    )
}

/// The sink against `cnlink proc --format json` to a file, from the medians of one run: CPU per event ratio
/// (the goal is at most 3), end-to-end rates, the spool's high-water mark and the audits.
pub(crate) fn sink_verdict(medians: &[Medians]) -> Option<String> {
    let sink = medians.iter().find(|m| m.listener == "sink")?;
    let file = medians.iter().find(|m| m.listener == "cnlink")?;
    let (high_water, complete, missing, broker) = sink.sink?;
    Some(format!(
        "sink vs cnlink --format json to a file: {:.2}x the CPU per event (goal: at most 3x; {:.2} vs {:.2} µs), \
         {:.0} vs {:.0} events/s end to end; spool high-water {:.1} MiB; audits complete in {complete} of {} runs, \
         at most {missing} records missing, worst run {} storm events lost; the server took {:.2} µs/event more",
        sink.cpu_per_event / file.cpu_per_event,
        sink.cpu_per_event,
        file.cpu_per_event,
        sink.end_to_end_rate,
        file.end_to_end_rate,
        high_water as f64 / (1 << 20) as f64,
        sink.runs,
        sink.worst_lost,
        broker
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_losses() {
        assert_eq!(loss(200, 150), 25.0);
        assert_eq!(loss(0, 0), 0.0);
    }
}
