//! The `sink` listener: `cnlink proc --sink` publishing to a `nats-server` the harness starts for the run (on
//! 127.0.0.1, a free port, JetStream in a fresh folder), then `cnlink collect --audit` reading the stream back
//! into the output file, which is counted like any listener's output. What it adds to a run: the spool's
//! high-water mark (from `cnlink proc`'s last line on stderr), the audit's verdict, and the server's own CPU
//! time (reported, not charged to the listener: in a fleet the server runs elsewhere).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cnlink_sink::spool::record::{Record, SegmentHeader};
use cnlink_testnats::{find_server, NatsServer};
use serde_json::Value;

use super::procfs;

/// How long `cnlink proc --sink` may take to drain its spool after SIGINT.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(120);

/// The broker and spool of one run.
pub(crate) struct Broker {
    server: NatsServer,
    dir: PathBuf,
    watch: SpoolWatch,
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
        Ok(Broker { server, dir: dir.to_owned(), watch: SpoolWatch::new(&dir.join("spool")) })
    }

    /// Whether the exit of one of `markers` reached the spool and the server acknowledged it (and so every
    /// record before it): the storm before the marker is shipped.
    pub(crate) fn shipped(&mut self, markers: &[i32]) -> bool {
        self.watch.read_new(markers);
        self.watch.marker_seq.is_some_and(|seq| self.watch.acked() >= seq)
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

/// Follows a spool's segment files as they grow (docs/sink.md's format, read with the sink's parser): the
/// first record holding the exit of a marker, and the acknowledged cursor.
struct SpoolWatch {
    dir: PathBuf,
    /// Per segment file, where its next unread record starts.
    read: BTreeMap<PathBuf, u64>,
    marker_seq: Option<u64>,
}

impl SpoolWatch {
    fn new(dir: &Path) -> SpoolWatch {
        SpoolWatch { dir: dir.to_owned(), read: BTreeMap::new(), marker_seq: None }
    }

    /// Reads what was appended since the last call, looking for an exit of one of `markers`.
    fn read_new(&mut self, markers: &[i32]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut segments: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
        segments.sort();
        for path in segments {
            let Ok(mut file) = File::open(&path) else { continue };
            let at = self.read.get(&path).copied().unwrap_or(0);
            let mut bytes = Vec::new();
            if file.seek(SeekFrom::Start(at)).and_then(|_| file.read_to_end(&mut bytes)).is_err() {
                continue;
            }
            let mut used = 0;
            if at == 0 {
                let Ok((_, header)) = SegmentHeader::parse(&bytes) else { continue };
                used = header;
            }
            while let Ok((record, len)) = Record::parse(&bytes[used..]) {
                used += len;
                if self.marker_seq.is_none() && record.token == "exit" {
                    let exit: Value = serde_json::from_slice(record.payload).unwrap_or_default();
                    let pid = exit["pid"].as_i64().and_then(|p| i32::try_from(p).ok());
                    if pid.is_some_and(|p| markers.contains(&p)) {
                        self.marker_seq = Some(record.seq);
                    }
                }
            }
            self.read.insert(path, at + used as u64);
        }
    }

    /// Every record up to this is acknowledged (the `state` file's `acked_seq`, at offset 8).
    fn acked(&self) -> u64 {
        let state = std::fs::read(self.dir.join("state")).unwrap_or_default();
        state.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
    }
}
