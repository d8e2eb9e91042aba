//! The `sink` listener: `cnlink proc --sink` publishing to a `nats-server` the harness starts for the run (on
//! 127.0.0.1, a free port, JetStream in a fresh folder), then `cnlink collect --audit` reading the stream back
//! into the output file, which is counted like any listener's output. What it adds to a run: the spool's
//! high-water mark (from `cnlink proc`'s last line on stderr), the audit's verdict, and the server's own CPU
//! time (reported, not charged to the listener: in a fleet the server runs elsewhere).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cnlink_testnats::{find_server, NatsServer};
use serde_json::Value;

use super::procfs;

/// How long `cnlink proc --sink` may take to drain its spool after SIGINT.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(120);

/// The broker and spool of one run.
pub(crate) struct Broker {
    server: NatsServer,
    dir: PathBuf,
}

/// What a sink run adds to the listener's figures.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SinkFigures {
    /// The most bytes the spool held.
    pub(crate) spool_high_water_bytes: u64,
    /// Records the audit found missing from the stream.
    pub(crate) audit_missing: u64,
    /// The audit found nothing unaccounted for.
    pub(crate) audit_complete: bool,
    /// The server's CPU time during the run, microseconds.
    pub(crate) broker_cpu_us: u64,
}

impl Broker {
    /// Starts a server with its store, and makes the spool's folder, under `dir` (emptied first).
    pub(crate) fn start(dir: &Path) -> Result<Broker> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let binary = find_server().map_err(anyhow::Error::msg)?;
        let server = NatsServer::try_start_on(&binary, &dir.join("store"), cnlink_testnats::free_port(), &[])
            .map_err(anyhow::Error::msg)?;
        Ok(Broker { server, dir: dir.to_owned() })
    }

    /// The arguments `cnlink proc` gets for this run.
    pub(crate) fn args(&self) -> Vec<String> {
        vec![
            "--sink".into(),
            self.server.url(),
            "--sink-spool".into(),
            self.dir.join("spool").display().to_string(),
            "--sink-drain-timeout".into(),
            format!("{}s", STOP_GRACE.as_secs() - 10),
        ]
    }

    /// After the listener stopped: reads the stream back with `cnlink collect --audit` into `out`, and the
    /// spool's high-water mark from the listener's stderr (`stderr`). Stops the server.
    pub(crate) fn finish(self, cnlink: &str, out: &Path, stderr: &str) -> Result<SinkFigures> {
        let broker_cpu_us = self
            .server
            .pid()
            .and_then(|pid| procfs::cpu_ticks(pid as i32).ok())
            .map_or(0, |ticks| ticks * 1_000_000 / clock_ticks());
        let spool_high_water_bytes = stderr
            .lines()
            .filter_map(|l| l.split_once("spool high-water ").and_then(|(_, r)| r.split(' ').next()))
            .filter_map(|n| n.parse().ok())
            .next_back()
            .context("no `spool high-water` in cnlink proc's last words")?;
        let collect_err = out.with_extension("collect.stderr");
        let status = Command::new(cnlink)
            .args(["collect", &self.server.url(), "--audit", "--idle-exit", "2s"])
            .stdin(Stdio::null())
            .stdout(File::create(out).with_context(|| format!("creating {}", out.display()))?)
            .stderr(File::create(&collect_err)?)
            .status()
            .context("running cnlink collect")?;
        let said = std::fs::read_to_string(&collect_err).unwrap_or_default();
        let _ = std::fs::remove_file(&collect_err);
        if !matches!(status.code(), Some(0 | 1)) {
            bail!("cnlink collect failed ({status}): {said}");
        }
        let audit = last_line(out)?;
        let audit: Value = serde_json::from_str(&audit).context("the audit line")?;
        let audit_missing =
            audit["boots"].as_array().map_or(0, |b| b.iter().filter_map(|b| b["missing"].as_u64()).sum());
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(SinkFigures {
            spool_high_water_bytes,
            audit_missing,
            audit_complete: audit["complete"] == true,
            broker_cpu_us,
        })
    }
}

fn last_line(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().next_back().unwrap_or_default().to_owned())
}

/// Clock ticks per second (`/proc/PID/stat`'s unit).
fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}
