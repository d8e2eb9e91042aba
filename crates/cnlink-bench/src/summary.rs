//! The small summary files kept in git (`bench/summary/BENCHMARK.json`): per labelled run, its parameters, the
//! machine (no paths, no load figures) and the medians, without the per-run data or the command line. The raw
//! JSON a benchmark writes with `--json` stays out of git; `charts` draws from these files.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// The machine fields kept: no paths, nothing that changes during a run.
const MACHINE: &[&str] = &["nproc", "kernel", "pid_max", "rmem_default", "rmem_max"];

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut m = Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            m.insert((*k).to_string(), x.clone());
        }
    }
    Value::Object(m)
}

/// The summary entry of one raw result of the `storm` or `bus` benchmark.
pub(crate) fn entry(benchmark: &str, label: &str, raw: &Value) -> Result<Value> {
    let machine = pick(&raw["machine"], MACHINE);
    let failures = |v: &Value| v.as_array().map_or(0, Vec::len);
    match benchmark {
        "storm" => {
            let mut e = json!({
                "label": label,
                "params": raw["params"],
                "machine": machine,
                "medians": raw.get("medians").context("no medians in the storm result")?,
                "failures": failures(&raw["failures"]),
            });
            // With `cnlink-record` and `cnlink` in the run: the recording's cost and its replay's speed.
            if raw["record_vs_json"].is_object() {
                e["record_vs_json"] = pick(
                    &raw["record_vs_json"],
                    &[
                        "ratio_of_medians",
                        "median_of_round_ratios",
                        "replay_json_events_per_s",
                        "replay_text_events_per_s",
                    ],
                );
            }
            Ok(e)
        }
        "bus" => Ok(json!({
            "label": label,
            "params": raw["params"],
            "machine": machine,
            "latency": raw["latency"]["medians"],
            "throughput": raw["throughput"]["medians"],
            "failures": failures(&raw["throughput"]["failures"]),
        })),
        other => bail!("no summary for a benchmark named {other:?}"),
    }
}

/// Adds `entry` to the summary file at `path` (created if missing), replacing an entry with the same label.
pub(crate) fn upsert(path: &Path, benchmark: &str, entry: Value) -> Result<()> {
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({ "benchmark": benchmark, "runs": [] }),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if doc["benchmark"] != benchmark {
        bail!("{} holds {} results, not {benchmark}", path.display(), doc["benchmark"]);
    }
    let runs = doc["runs"].as_array_mut().with_context(|| format!("{}: no runs array", path.display()))?;
    match runs.iter_mut().find(|r| r["label"] == entry["label"]) {
        Some(r) => *r = entry,
        None => runs.push(entry),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a summary file.
#[allow(dead_code)] // Used by `charts` only.
pub(crate) fn read(path: &Path, benchmark: &str) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if doc["benchmark"] != benchmark {
        bail!("{} holds {} results, not {benchmark}", path.display(), doc["benchmark"]);
    }
    Ok(doc["runs"].as_array().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_medians_and_drop_paths_and_runs() {
        let raw = json!({
            "command": "/home/someone/target/release/storm --json x.json",
            "machine": {"nproc": 2, "kernel": "6.18", "loadavg_start": "1 2 3"},
            "params": {"children": 10},
            "runs": [{"listener": "cnlink"}],
            "medians": [{"listener": "cnlink", "cpu_us_per_event": 2.5}],
            "failures": [],
        });
        let e = entry("storm", "thread, nice 0", &raw).unwrap();
        let text = e.to_string();
        assert!(!text.contains("/home") && !text.contains("loadavg") && e.get("runs").is_none(), "{text}");
        assert_eq!(e["medians"][0]["cpu_us_per_event"], 2.5);
        let dir = std::env::temp_dir().join(format!("cnlink-summary-{}", std::process::id()));
        let path = dir.join("storm.json");
        upsert(&path, "storm", e.clone()).unwrap();
        upsert(&path, "storm", entry("storm", "other", &raw).unwrap()).unwrap();
        upsert(&path, "storm", e).unwrap();
        let runs = read(&path, "storm").unwrap();
        assert_eq!(runs.iter().map(|r| r["label"].as_str().unwrap()).collect::<Vec<_>>(), ["thread, nice 0", "other"]);
        assert!(read(&path, "bus").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
