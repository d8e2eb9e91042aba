//! Medians across rounds, ratios to the raw floor, and the printed and JSON summaries.

use serde_json::{json, Value};

use super::fanout::{self, Spec};
use super::latency::{self, Scenario};
pub(crate) use crate::common::median;

/// One latency scenario across rounds.
#[derive(Debug, Clone)]
pub(crate) struct LatencyMedian {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// Rounds measured.
    pub(crate) runs: usize,
    /// Median across rounds of each round's p50, µs.
    pub(crate) p50_us: f64,
    /// Median of the p99s, µs.
    pub(crate) p99_us: f64,
    /// Median of the means, µs.
    pub(crate) mean_us: f64,
    /// Median round trips per second.
    pub(crate) rate: f64,
    /// `p50_us` over raw's.
    pub(crate) ratio_p50: f64,
    /// `p99_us` over raw's.
    pub(crate) ratio_p99: f64,
    /// Median across rounds of the p50 ratio to the same round's raw p50.
    pub(crate) ratio_p50_per_round: f64,
}

impl LatencyMedian {
    /// Whether the p50 ratio meets the target (None: no target).
    pub(crate) fn meets_target(&self) -> Option<bool> {
        self.scenario.target_ratio().map(|t| self.ratio_p50 <= t)
    }

    /// Machine-readable form.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario.name(), "runs": self.runs, "p50_us": self.p50_us, "p99_us": self.p99_us,
            "mean_us": self.mean_us, "round_trips_per_sec": self.rate, "ratio_p50": self.ratio_p50,
            "ratio_p99": self.ratio_p99, "ratio_p50_per_round_median": self.ratio_p50_per_round,
            "target_ratio_p50": self.scenario.target_ratio(), "meets_target": self.meets_target(),
        })
    }
}

/// Medians per scenario, with ratios to raw.
pub(crate) fn latency_summary(runs: &[latency::Run]) -> Vec<LatencyMedian> {
    let of = |s: Scenario| runs.iter().filter(move |r| r.scenario == s);
    let med = |s: Scenario, f: &dyn Fn(&latency::Run) -> f64| median(&of(s).map(f).collect::<Vec<_>>());
    let us = |ns: u64| ns as f64 / 1000.0;
    let raw_p50 = med(Scenario::Raw, &|r| us(r.p50_ns));
    let raw_p99 = med(Scenario::Raw, &|r| us(r.p99_ns));
    Scenario::ALL
        .iter()
        .filter(|&&s| of(s).next().is_some())
        .map(|&s| {
            let per_round: Vec<f64> = of(s)
                .filter_map(|r| {
                    let raw = runs.iter().find(|x| x.round == r.round && x.scenario == Scenario::Raw)?;
                    Some(r.p50_ns as f64 / raw.p50_ns.max(1) as f64)
                })
                .collect();
            let p50 = med(s, &|r| us(r.p50_ns));
            let p99 = med(s, &|r| us(r.p99_ns));
            LatencyMedian {
                scenario: s,
                runs: of(s).count(),
                p50_us: p50,
                p99_us: p99,
                mean_us: med(s, &|r| r.mean_ns / 1000.0),
                rate: med(s, &|r| r.rate()),
                ratio_p50: p50 / raw_p50,
                ratio_p99: p99 / raw_p99,
                ratio_p50_per_round: median(&per_round),
            }
        })
        .collect()
}

/// The latency medians as a Markdown table.
pub(crate) fn latency_table(s: &[LatencyMedian]) -> String {
    let mut out = String::from("latency, medians across rounds (ratios are to raw's median):\n");
    out += "| scenario | rounds | p50 µs | p99 µs | mean µs | round trips/s | p50 × raw | p99 × raw \
            | target (p50) |\n";
    out += "|---|---|---|---|---|---|---|---|---|\n";
    for m in s {
        let target = match (m.scenario.target_ratio(), m.meets_target()) {
            (Some(t), Some(ok)) => format!("≤ {t}×: {}", if ok { "met" } else { "missed" }),
            _ if m.scenario == Scenario::Raw => "floor".into(),
            _ => "(diagnostic)".into(),
        };
        out += &format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} |\n",
            m.scenario.name(),
            m.runs,
            m.p50_us,
            m.p99_us,
            m.mean_us,
            m.rate,
            m.ratio_p50,
            m.ratio_p99,
            target
        );
    }
    out
}

/// One fan-out configuration across rounds.
#[derive(Debug, Clone)]
pub(crate) struct ThroughputMedian {
    /// What ran.
    pub(crate) spec: Spec,
    /// Rounds measured.
    pub(crate) runs: usize,
    /// Median publisher rate, messages/s.
    pub(crate) send_rate: f64,
    /// Median of each run's median per-subscriber rate, messages/s.
    pub(crate) per_sub_rate: f64,
    /// Median of each run's slowest subscriber's rate.
    pub(crate) slowest_sub_rate: f64,
    /// Median total deliveries per second.
    pub(crate) total_rate: f64,
    /// Median loss, percent of deliveries due.
    pub(crate) loss_pct: f64,
    /// Worst run's lost deliveries.
    pub(crate) worst_lost: u64,
    /// Median daemon CPU per delivery, ns.
    pub(crate) daemon_ns_per_delivery: f64,
}

impl ThroughputMedian {
    /// Machine-readable form.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "subscribers": self.spec.subscribers, "mode": self.spec.mode.name(), "rcvbuf": self.spec.rcvbuf,
            "messages": self.spec.messages, "runs": self.runs, "send_rate": self.send_rate,
            "per_subscriber_rate": self.per_sub_rate, "slowest_subscriber_rate": self.slowest_sub_rate,
            "total_rate": self.total_rate, "loss_pct": self.loss_pct, "worst_lost": self.worst_lost,
            "daemon_ns_per_delivery": self.daemon_ns_per_delivery,
        })
    }
}

/// Medians per run setup, in the order first seen.
pub(crate) fn throughput_summary(runs: &[fanout::Run]) -> Vec<ThroughputMedian> {
    let mut specs: Vec<Spec> = Vec::new();
    for r in runs {
        if !specs.contains(&r.spec) {
            specs.push(r.spec);
        }
    }
    specs
        .into_iter()
        .map(|spec| {
            let rs: Vec<&fanout::Run> = runs.iter().filter(|r| r.spec == spec).collect();
            let med = |f: &dyn Fn(&fanout::Run) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
            ThroughputMedian {
                spec,
                runs: rs.len(),
                send_rate: med(&|r| r.send_rate()),
                per_sub_rate: med(&|r| median(&r.sub_rates())),
                slowest_sub_rate: med(&|r| r.sub_rates().into_iter().fold(f64::INFINITY, f64::min)),
                total_rate: med(&|r| r.total_rate()),
                loss_pct: med(&|r| r.loss_pct()),
                worst_lost: rs.iter().map(|r| r.lost()).max().unwrap_or(0),
                daemon_ns_per_delivery: med(&|r| r.daemon_ns_per_delivery()),
            }
        })
        .collect()
}

/// The throughput medians as a Markdown table.
pub(crate) fn throughput_table(s: &[ThroughputMedian]) -> String {
    let mut out = String::from("throughput and fan-out, medians across rounds:\n");
    out += "| subscribers | publisher | subscriber rcvbuf | rounds | messages | sent/s | received/s per subscriber \
            (median) | slowest subscriber/s | deliveries/s total | loss % | worst run: lost | daemon ns/delivery |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    for m in s {
        out += &format!(
            "| {} | `{}` | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {} | {:.0} |\n",
            m.spec.subscribers,
            m.spec.mode.name(),
            m.spec.rcvbuf_name(),
            m.runs,
            m.spec.messages,
            m.send_rate,
            m.per_sub_rate,
            m.slowest_sub_rate,
            m.total_rate,
            m.loss_pct,
            m.worst_lost,
            m.daemon_ns_per_delivery
        );
    }
    out
}
