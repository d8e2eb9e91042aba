//! `cnlink replay`: a recording (`cnlink record`, `cnlink proc --record`, `cnlink listen --record`) shown again,
//! through the same decoder, process table, filters and writers as live.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cnlink::engine::ClientCore;
use cnlink::socket::Credentials;
use cnlink::wire::{CnMsg, EventMask, NlAddr, NlMessages};
use cnlink::{ClientItem, MatchRule, Trust};
use cnlink_procmon::capture::{RecordingItem, RecordingReader, Session};
use cnlink_procmon::{HostIdentity, MonitorBuilder, RecordedProc, ReplayEvents, ReplayInput};

use super::proc::{self, ProcArgs, ProcFormat};
use crate::cmd::send::Printer;
use crate::monitor;
use crate::monitor::clock::{LocalClock, Reading};

/// Show a recording again.
#[derive(Debug, clap::Args)]
#[command(after_help = "Takes the output options of `cnlink proc` (formats, ECS, --tree, -e, filters, the tree \
filters, -S, ...): with the options the recording was made with, the output is the one `cnlink proc` printed \
live, the time column and ECS's @timestamp and host.name included (they come from the recording). Other filters \
and event lists apply at replay time; what the recording lacks (an event kind not subscribed to, /proc reads the \
live monitor did not make) is absent or marked unavailable. A \
recording of `cnlink listen` is printed as `cnlink listen` printed it (--format).\n\nA file that is damaged \
(truncated, corrupted) is read up to the damage, which is reported on stderr with its byte offset; the next files \
are read too. Exit status: 0 when every file was read whole, 1 when some file was damaged, unreadable, or had \
holes (the recording itself missed events), 2 on errors.")]
pub(crate) struct ReplayArgs {
    /// The recording's files, in order (a rotated set oldest first).
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// Pace: N times the recorded speed (by the packets' timestamps), or `max`.
    #[arg(long, value_name = "N|max", default_value = "max")]
    speed: Speed,
    #[command(flatten)]
    proc: ProcArgs,
}

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Speed {
    /// As fast as possible.
    Max,
    /// This many times the recorded pace.
    Times(f64),
}

impl FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(Speed::Times(n)),
            _ => Err(format!("invalid speed {s:?} (a positive number, or max)")),
        }
    }
}

/// What the monitor runs from in a replay.
#[derive(Debug)]
pub(crate) struct Replay {
    /// The time column's clock: what the recording program took as local time.
    pub(crate) clock: LocalClock,
    /// The recorded host's name (ECS `host.name`).
    pub(crate) host_name: Option<String>,
    events: ReplayEvents,
    proc: RecordedProc,
    host: Option<HostIdentity>,
    pid: i32,
}

impl Replay {
    /// The builder, fed from the recording.
    pub(crate) fn setup(self, b: MonitorBuilder) -> MonitorBuilder {
        let b = b.source(self.events).proc_source(self.proc).own_pid(Some(self.pid));
        match self.host {
            Some(h) => b.host(h),
            None => b,
        }
    }
}

/// Says on stderr what is wrong with the recording (damage, unreadable files, holes) and remembers that
/// something was.
#[derive(Debug, Clone, Default)]
struct Problems(Arc<AtomicBool>);

impl Problems {
    /// Reports `item` if it is a problem; the replay input it is, if it is one.
    fn sort(&self, item: RecordingItem) -> Option<ReplayInput> {
        let say = |what: String| {
            self.0.store(true, Ordering::Relaxed);
            eprintln!("cnlink replay: {what}");
        };
        match item {
            RecordingItem::Input(i) => return Some(i),
            RecordingItem::Damage { path, damage } => say(format!(
                "{}: damaged at byte {}: {}; replayed what came before",
                path.display(),
                damage.offset,
                damage.kind
            )),
            RecordingItem::Error { path, offset: Some(at), what } => {
                say(format!("{}: at byte {at}: {what}", path.display()))
            }
            RecordingItem::Error { path, offset: None, what } => say(format!("{}: {what}", path.display())),
            RecordingItem::Hole { count } => say(format!(
                "the recording missed {} events here (its channel was full)",
                count.map_or("some".to_string(), |n| n.to_string())
            )),
            _ => {}
        }
        None
    }

    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Sleeps before each datagram so that they come at `speed` times their recorded pace.
struct Paced<I> {
    inner: I,
    speed: f64,
    start: Option<(u64, Instant)>,
}

impl<I: Iterator<Item = ReplayInput>> Iterator for Paced<I> {
    type Item = ReplayInput;

    fn next(&mut self) -> Option<ReplayInput> {
        let item = self.inner.next()?;
        if let ReplayInput::Datagram { timestamp_ns, .. } = &item {
            let (t0, i0) = *self.start.get_or_insert((*timestamp_ns, Instant::now()));
            let due = Duration::from_secs_f64(timestamp_ns.saturating_sub(t0) as f64 / 1e9 / self.speed);
            if let Some(wait) = (i0 + due).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Some(item)
    }
}

/// The replay inputs of `files`, paced, with problems reported.
fn inputs(files: &[PathBuf], speed: Speed, problems: &Problems) -> Box<dyn Iterator<Item = ReplayInput> + Send> {
    let p = problems.clone();
    let items = RecordingReader::new(files.to_vec()).filter_map(move |i| p.sort(i));
    match speed {
        Speed::Max => Box::new(items),
        Speed::Times(speed) => Box::new(Paced { inner: items, speed, start: None }),
    }
}

pub(crate) fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    if a.proc.record.is_some() {
        bail!("--record does not apply to a replay");
    }
    let head = RecordingReader::head(&a.files[0]).with_context(|| format!("reading {}", a.files[0].display()))?;
    let problems = Problems::default();
    let session = head.session.clone().unwrap_or_default();
    let Some(ms) = session.monitor.clone() else {
        listen(&a, &problems)?;
        return Ok(if problems.any() { ExitCode::from(1) } else { ExitCode::SUCCESS });
    };
    let events = ReplayEvents::new(inputs(&a.files, a.speed, &problems), EventMask(ms.kernel_mask), ms.kernel_filtered);
    let answers = RecordingReader::new(a.files.clone()).filter_map(RecordingItem::into_answer);
    // The clock records say what times the live run printed (the text time column, ECS's `@timestamp`); a
    // recording without them gets the host record's offset and this machine's time zone.
    let clock = match a.proc.format() {
        ProcFormat::Text | ProcFormat::Ecs => LocalClock::recorded(RecordingReader::clocks(&a.files)),
        ProcFormat::Json => None,
    }
    .unwrap_or_else(|| {
        LocalClock::starting(Reading {
            monotonic_ns: 0,
            realtime_minus_monotonic_ns: head.offset(),
            utc_offset_s: chrono::Local::now().offset().local_minus_utc(),
        })
    });
    let replay = Replay {
        clock,
        host_name: head.host.as_ref().map(|h| h.hostname.clone()),
        events,
        proc: RecordedProc::new(answers),
        host: session_host(&session),
        pid: session.pid,
    };
    let mut cfg = proc::config(a.proc, "replay")?;
    if cfg.sink.is_some() {
        // A sink ships this host's live events, numbered for this boot.
        anyhow::bail!("--sink ships live events (cnlink proc, cnlink record), not a replay");
    }
    // Without /proc reads live, the recording holds none to give.
    cfg.enrich &= ms.enrich;
    cfg.replay = Some(replay);
    let code = monitor::run(cfg)?;
    Ok(if problems.any() && code == ExitCode::SUCCESS { ExitCode::from(1) } else { code })
}

fn session_host(s: &Session) -> Option<HostIdentity> {
    s.host()
}

/// The `idx` of a datagram's first `cn_msg`.
fn first_idx(datagram: &[u8]) -> Option<u32> {
    let nl = NlMessages::new(datagram).next()?.ok()?;
    Some(CnMsg::new_checked(nl.payload()).ok()?.id().idx)
}

/// A recording of `cnlink listen`: every message printed as `listen` printed it. Who sent each datagram is
/// kept (the kernel or not); the kernel's credentials and group are restored, a userspace sender's are not.
fn listen(a: &ReplayArgs, problems: &Problems) -> anyhow::Result<()> {
    let mut core = ClientCore::new(NlAddr::KERNEL, MatchRule::Documented, Trust::Anyone, 0);
    let mut printer = Printer::new(a.proc.listen_format()?);
    let mut out = std::io::stdout().lock();
    let mut overruns = 0;
    for input in inputs(&a.files, a.speed, problems) {
        match input {
            ReplayInput::Datagram { from_port: 0, bytes, .. } => {
                // The kernel multicasts to the group of the message's idx, with its own credentials.
                let group = first_idx(&bytes).unwrap_or(0);
                let creds = Credentials { pid: 0, uid: 0, gid: 0 };
                core.handle(NlAddr { port: 0, groups: group }, Some(creds), &bytes)
            }
            ReplayInput::Datagram { from_port, bytes, .. } => core.handle(NlAddr::port(from_port), None, &bytes),
            ReplayInput::Overrun { .. } => core.handle_overrun(),
            ReplayInput::Lost { .. } => {}
        }
        while let Some(item) = core.poll_item() {
            match item {
                ClientItem::Message(m) => printer.message(&mut out, &m)?,
                ClientItem::Overrun => {
                    overruns += 1;
                    printer.overrun(&mut out, overruns)?;
                }
                _ => {}
            }
        }
    }
    out.flush()?;
    Ok(())
}
