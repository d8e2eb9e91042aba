//! `charts`: draws the headline results of `BENCHMARKS.md` as SVG from the summary files kept in git, and makes
//! those summaries from a benchmark's raw JSON.
//!
//! ```text
//! cargo run -p cnlink-bench --bin charts                 # bench/summary/*.json -> docs/charts/*.svg
//! cargo run -p cnlink-bench --bin charts -- summarize storm "LABEL" RAW.json   # add a raw run to the summary
//! ```
//!
//! The charts: loss and CPU per event per listener in the proc storm (one bar per summary entry), the bus's
//! round trips as ratios to the raw ping-pong (with the targets), and the bus's fan-out. Only plotters' SVG
//! backend is used: text is laid out by estimate and drawn by the viewer, so no font files are needed.

#![deny(unsafe_code)]

#[path = "../summary.rs"]
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// Benchmark charts.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Where the summary files are.
    #[arg(long, default_value = "bench/summary")]
    summary_dir: PathBuf,
    /// Where the charts go.
    #[arg(long, default_value = "docs/charts")]
    out: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Add (or replace) a labelled run in BENCHMARK's summary file, from the raw JSON the benchmark wrote.
    Summarize {
        /// `storm` or `bus`.
        benchmark: String,
        /// The run's label in the summary (and in the charts' legends).
        label: String,
        /// The raw JSON (`--json` of the benchmark).
        raw: PathBuf,
        /// Where the summary files are.
        #[arg(long, default_value = "bench/summary")]
        summary_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Summarize { benchmark, label, raw, summary_dir }) => {
            summarize(&benchmark, &label, &raw, &summary_dir)
        }
        None => draw_all(&cli.summary_dir, &cli.out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("charts: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn summarize(benchmark: &str, label: &str, raw: &Path, dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(raw).with_context(|| format!("reading {}", raw.display()))?;
    let raw: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", raw.display()))?;
    let path = dir.join(format!("{benchmark}.json"));
    summary::upsert(&path, benchmark, summary::entry(benchmark, label, &raw)?)?;
    println!("{}: {label}", path.display());
    Ok(())
}

fn draw_all(dir: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let storm = summary::read(&dir.join("storm.json"), "storm")?;
    let bus = summary::read(&dir.join("bus.json"), "bus")?;
    let charts = [
        ("storm-loss.svg", storm_chart(&storm, "events lost, % (median of each listener's runs)", loss_pct)),
        ("storm-cpu.svg", storm_chart(&storm, "CPU per event, µs (median)", |m| m["cpu_us_per_event"].as_f64())),
        ("bus-round-trip.svg", round_trip_chart(&bus)),
        ("bus-fanout.svg", fanout_chart(&bus)?),
    ];
    for (name, chart) in charts {
        let path = out.join(name);
        chart.draw(&path).with_context(|| format!("drawing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// Fork and exit losses together.
fn loss_pct(m: &Value) -> Option<f64> {
    Some((m["fork_loss_pct"].as_f64()? + m["exit_loss_pct"].as_f64()?) / 2.0)
}

/// Grouped horizontal bars: one group per category, one bar per series.
#[derive(Debug)]
struct Bars {
    title: String,
    x_label: String,
    categories: Vec<String>,
    /// Series label, then one value per category.
    series: Vec<(String, Vec<Option<f64>>)>,
    /// Vertical reference lines (a target), with their labels.
    marks: Vec<(f64, String)>,
    /// Where the legend goes (where the bars are short).
    legend: SeriesLabelPosition,
}

/// The storm's listeners (in the first entry's order) against each summary entry.
fn storm_chart(entries: &[Value], what: &str, value: fn(&Value) -> Option<f64>) -> Bars {
    let mut categories: Vec<String> = Vec::new();
    for e in entries {
        for m in e["medians"].as_array().into_iter().flatten() {
            let l = m["listener"].as_str().unwrap_or("?").to_string();
            if !categories.contains(&l) {
                categories.push(l);
            }
        }
    }
    let series = entries
        .iter()
        .map(|e| {
            let values = categories
                .iter()
                .map(|c| e["medians"].as_array()?.iter().find(|m| m["listener"] == c.as_str()).and_then(value))
                .collect();
            (e["label"].as_str().unwrap_or("?").to_string(), values)
        })
        .collect();
    Bars {
        title: format!("Proc-event storm: {what}"),
        x_label: what.to_string(),
        categories,
        series,
        marks: Vec::new(),
        legend: SeriesLabelPosition::UpperRight,
    }
}

/// The bus's round-trip p50 as a ratio to the raw ping-pong, per scenario and entry.
fn round_trip_chart(entries: &[Value]) -> Bars {
    let with: Vec<&Value> = entries.iter().filter(|e| e["latency"].is_array()).collect();
    let mut categories: Vec<String> = Vec::new();
    let mut marks: Vec<(f64, String)> = Vec::new();
    for e in &with {
        for m in e["latency"].as_array().into_iter().flatten() {
            let s = m["scenario"].as_str().unwrap_or("?").to_string();
            if !categories.contains(&s) {
                categories.push(s.clone());
            }
            if let Some(t) = m["target_ratio_p50"].as_f64() {
                if !marks.iter().any(|(x, _)| *x == t) {
                    marks.push((t, format!("target {t}×")));
                }
            }
        }
    }
    let series = with
        .iter()
        .map(|e| {
            let values = categories
                .iter()
                .map(|c| e["latency"].as_array()?.iter().find(|m| m["scenario"] == c.as_str())?["ratio_p50"].as_f64())
                .collect();
            (e["label"].as_str().unwrap_or("?").to_string(), values)
        })
        .collect();
    Bars {
        title: "Bus round trip, p50 as a multiple of a raw NETLINK_USERSOCK ping-pong".into(),
        x_label: "p50 round trip ÷ raw p50 (median of 5 rounds)".into(),
        categories,
        series,
        marks,
        legend: SeriesLabelPosition::LowerRight,
    }
}

/// Fan-out of the last entry with throughput runs: deliveries per second in total and per subscriber, for a
/// publisher sending flat out to subscribers with the first receive buffer of the run.
fn fanout_chart(entries: &[Value]) -> Result<Bars> {
    let e = entries.iter().rev().find(|e| e["throughput"].is_array()).context("no bus entry with throughput")?;
    let rcvbuf = &e["params"]["sub_rcvbuf"][0];
    let rows: Vec<&Value> = e["throughput"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["mode"] == "send" && m["rcvbuf"] == *rcvbuf)
        .collect();
    let categories = rows
        .iter()
        .map(|m| match m["subscribers"].as_u64() {
            Some(1) => "1 subscriber".to_string(),
            n => format!("{} subscribers", n.unwrap_or(0)),
        })
        .collect();
    let col = |k: &str| rows.iter().map(|m| m[k].as_f64().map(|v| v / 1000.0)).collect();
    Ok(Bars {
        title: format!("Bus fan-out, publisher flat out: {}", e["label"].as_str().unwrap_or("?")),
        x_label: "thousand messages per second (median of 5 rounds)".into(),
        categories,
        series: vec![
            ("deliveries/s, all subscribers".into(), col("total_rate")),
            ("received/s, per subscriber".into(), col("per_subscriber_rate")),
        ],
        marks: Vec::new(),
        legend: SeriesLabelPosition::LowerRight,
    })
}

/// Series colours (colour-blind friendly).
const COLOURS: [RGBColor; 4] =
    [RGBColor(0, 114, 178), RGBColor(230, 159, 0), RGBColor(0, 158, 115), RGBColor(204, 121, 167)];

impl Bars {
    fn draw(&self, path: &Path) -> Result<()> {
        let n = self.categories.len().max(1);
        let k = self.series.len().max(1);
        let height = 140 + (n * (k * 16 + 14)) as u32 + 20 * k as u32;
        let root = SVGBackend::new(path, (900, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
            .chain(self.marks.iter().map(|m| m.0))
            .fold(0.0f64, f64::max);
        let xmax = if max > 0.0 { max * 1.18 } else { 1.0 };
        let label_width = self.categories.iter().map(|c| c.chars().count()).max().unwrap_or(4) as u32 * 7 + 16;
        let mut chart = ChartBuilder::on(&root)
            .caption(&self.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(label_width)
            .build_cartesian_2d(0.0..xmax, 0.0..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(self.x_label.as_str())
            .label_style(("sans-serif", 13))
            .draw()?;
        // The category names, right-aligned left of the axis, in the middle of their rows (from the top).
        let right = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        for (i, name) in self.categories.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(0.0, (n - 1 - i) as f64 + 0.5));
            root.draw(&Text::new(name.as_str(), (x - 8, y), right.clone()))?;
        }
        // Category i spans [i, i + 1) from the top; its bars share the middle 80%.
        let band = 0.8 / k as f64;
        for (s, (name, values)) in self.series.iter().enumerate() {
            let colour = COLOURS[s % COLOURS.len()];
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                let top = (n - 1 - i) as f64 + 0.9 - s as f64 * band;
                v.map(|v| Rectangle::new([(0.0, top - band), (v, top)], colour.filled()))
            });
            chart
                .draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled()));
            let texts = values.iter().enumerate().filter_map(|(i, v)| {
                let mid = (n - 1 - i) as f64 + 0.9 - s as f64 * band - band / 2.0;
                v.map(|v| Text::new(format!(" {}", figure(v)), (v, mid), ("sans-serif", 12).into_font()))
            });
            chart.draw_series(texts)?;
        }
        for (x, label) in &self.marks {
            let dashed = BLACK.mix(0.6).stroke_width(1);
            chart.draw_series(std::iter::once(PathElement::new(vec![(*x, 0.0), (*x, n as f64)], dashed)))?;
            chart.draw_series(std::iter::once(Text::new(
                format!(" {label}"),
                (*x, n as f64 - 0.02),
                ("sans-serif", 12).into_font(),
            )))?;
        }
        chart
            .configure_series_labels()
            .position(self.legend.clone())
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// A value as the tables print it.
fn figure(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charts_from_a_small_summary() {
        let storm = vec![json!({"label": "nice 0", "medians": [
            {"listener": "cnlink", "fork_loss_pct": 0.0, "exit_loss_pct": 0.0, "cpu_us_per_event": 2.8},
            {"listener": "forkstat", "fork_loss_pct": 1.0, "exit_loss_pct": 0.8, "cpu_us_per_event": 22.1}]})];
        let loss = storm_chart(&storm, "lost", loss_pct);
        assert_eq!(loss.categories, ["cnlink", "forkstat"]);
        assert_eq!(loss.series[0].1, [Some(0.0), Some(0.9)]);
        let bus = vec![json!({"label": "run C", "params": {"sub_rcvbuf": [0]},
            "latency": [{"scenario": "raw", "ratio_p50": 1.0, "target_ratio_p50": null},
                        {"scenario": "remote", "ratio_p50": 2.6, "target_ratio_p50": 3.0}],
            "throughput": [{"subscribers": 8, "mode": "send", "rcvbuf": 0, "total_rate": 180000.0,
                            "per_subscriber_rate": 22500.0},
                           {"subscribers": 1, "mode": "send_group", "rcvbuf": 0, "total_rate": 1.0,
                            "per_subscriber_rate": 1.0}]})];
        let rt = round_trip_chart(&bus);
        assert_eq!(rt.marks, [(3.0, "target 3×".to_string())]);
        let fan = fanout_chart(&bus).unwrap();
        assert_eq!(fan.categories, ["8 subscribers"]);
        assert!(fan.title.ends_with(": run C"), "{}", fan.title);
        assert_eq!(fan.series[0].1, [Some(180.0)]);
        let dir = std::env::temp_dir().join(format!("cnlink-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, chart) in [("loss.svg", loss), ("rt.svg", rt), ("fan.svg", fan)] {
            let path = dir.join(name);
            chart.draw(&path).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.starts_with("<svg") && svg.contains("<rect") && svg.contains("</svg>"), "{svg}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
