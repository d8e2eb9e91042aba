//! `cnlink proc`: the process-event monitor's options (forkstat's, with long names, and more).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::text_flags::TextFlags;
use super::{parse_duration, parse_size, Format};
use cnlink_procmon::{ProcFilter, ProcessRef, RecordFilter, Selection, TreeFilter};

use crate::monitor::{self, Config, RecordTo};
use crate::record::RecordArgs;
use crate::service::ServiceArgs;
use crate::sink::args::SinkArgs;

/// Watch process events.
#[derive(Debug, clap::Args)]
#[command(after_help = "EVENTS (-e): fork (new process), clone (new thread), exec, exit, nonzero-exit, coredump (or \
core), comm, ptrace (or ptrce), uid, gid, sid, all. Default: all (forkstat's default is fork,exec,exit: \
-e fork,exec,exit).\n\nLosses are never silent: a `lost` line says how many events the kernel or the monitor \
dropped. Ctrl-C stops (printing -S statistics) with exit code 0.")]
pub(crate) struct ProcArgs {
    /// Events to show, comma-separated (see below).
    #[arg(short = 'e', long = "events", value_name = "LIST", conflicts_with_all = ["all", "everything"])]
    events: Option<String>,
    /// All events (the default).
    #[arg(short = 'E', long = "all")]
    all: bool,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m).
    #[arg(short = 'D', long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Statistics at the end: events per kind and per process, losses, the monitor's own CPU time.
    #[arg(short = 'S', long)]
    stats: bool,
    /// Print no events, only the statistics at the end (implies -S).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    text: TextFlags,
    /// Flush after every line (the default when stdout is a terminal).
    #[arg(short = 'l', long = "line-buffered")]
    line_buffered: bool,
    /// Only processes in this process group.
    #[arg(short = 'p', long = "pgrp", value_name = "PGRP")]
    pgrp: Option<i32>,
    /// Run with real-time FIFO scheduling (needs CAP_SYS_NICE; without it, a warning and normal scheduling).
    #[arg(short = 'r', long)]
    realtime: bool,
    /// Everything: -E -g -r -S -x.
    #[arg(short = 'X')]
    everything: bool,
    /// Only these processes (comma-separated or repeated).
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pids: Vec<i32>,
    /// With --pid: also their descendants, present and future.
    #[arg(long, requires = "pids")]
    descendants: bool,
    /// Only processes whose comm or program matches this glob (`*`, `?`); repeatable.
    #[arg(long = "name", value_name = "PATTERN")]
    names: Vec<String>,
    /// Only processes of this user (uid or name; real or effective); repeatable.
    #[arg(long = "uid", value_name = "USER")]
    uids: Vec<String>,
    /// Output format: text, json (docs/json.md) or ecs (Elastic Common Schema, docs/ecs.md).
    #[arg(long, value_enum, default_value_t = ProcFormat::Text)]
    format: ProcFormat,
    /// Text: indent each process under its parent.
    #[arg(long)]
    tree: bool,
    /// Only this process and its descendants, present and future, also when reparented (a pid, an entity id,
    /// or a name: comm, executable path or file name; repeatable).
    #[arg(long = "descendants-of", value_name = "PID|NAME")]
    descendants_of: Vec<ProcessRef>,
    /// Not this process nor its descendants (as --descendants-of; repeatable).
    #[arg(long = "exclude-descendants-of", value_name = "PID|NAME")]
    exclude_descendants_of: Vec<ProcessRef>,
    /// Only processes in this container (full id or prefix; repeatable).
    #[arg(long = "container", value_name = "ID")]
    containers: Vec<String>,
    /// Only processes in this systemd unit or slice (`nginx` means `nginx.service`; repeatable).
    #[arg(long = "unit", value_name = "NAME")]
    units: Vec<String>,
    /// Read nothing from /proc: no names, command lines, uids or cgroups beyond what events carry (entity ids then
    /// come from the events; not with the tree filters).
    #[arg(long)]
    no_enrich: bool,
    /// Filter in userspace even when the kernel (6.6+) could (keeps exact per-CPU loss counts).
    #[arg(long)]
    no_kernel_filter: bool,
    /// Socket receive buffer (forced past rmem_max when privileged), e.g. 64M. About 1 KiB per queued event; -S
    /// prints what the kernel granted.
    #[arg(long, value_name = "BYTES", default_value = "32M", value_parser = parse_size)]
    rcvbuf: usize,
    /// After each wake-up, let events accumulate this long before draining them (fewer wake-ups).
    #[arg(long, value_name = "DURATION", default_value = "5ms", value_parser = parse_duration)]
    batch_latency: Duration,
    /// Most events queued between receiving and printing before they are dropped (and counted).
    #[arg(long, value_name = "EVENTS", default_value_t = 1 << 18)]
    queue: usize,
    /// Most processes the process table keeps (live and lately exited); beyond, exited ones go first.
    #[arg(long, value_name = "N", default_value_t = 1 << 18)]
    cache_max: usize,
    /// Ancestors on exec and exit events (pid, entity id and name of each, parent first); 0 for none.
    #[arg(long, value_name = "N", default_value_t = 64)]
    ancestry_depth: usize,
    /// How long to wait for the kernel to acknowledge the subscription.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    ack_timeout: Duration,
    /// Also record what the monitor receives and reads to this pcapng file (see `cnlink record`); times are
    /// then printed with the clocks as recorded, so that `cnlink replay` prints the same.
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) rotation: RecordArgs,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    sink: SinkArgs,
}

/// Output formats of `cnlink proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProcFormat {
    /// Human-readable text.
    Text,
    /// JSON Lines: one object per line (see docs/json.md).
    Json,
    /// Elastic Common Schema documents, one per line (see docs/ecs.md).
    Ecs,
}

/// A uid given as a number or a user name (looked up through NSS: /etc/passwd, LDAP, sssd, ...).
fn resolve_uid(u: &str) -> anyhow::Result<u32> {
    if let Ok(n) = u.parse() {
        return Ok(n);
    }
    crate::sys::user_id(u).with_context(|| format!("no such user: {u:?}"))
}

impl ProcArgs {
    /// The output format.
    pub(crate) fn format(&self) -> ProcFormat {
        self.format
    }

    /// The output format of a recording of `cnlink listen` (text or JSON: ECS and the tree are views of process
    /// events).
    pub(crate) fn listen_format(&self) -> anyhow::Result<Format> {
        if self.tree {
            bail!("--tree shows process events: this is a recording of `cnlink listen`");
        }
        Ok(match self.format {
            ProcFormat::Text => Format::Text,
            ProcFormat::Json => Format::Json,
            ProcFormat::Ecs => bail!("--format ecs shows process events: this is a recording of `cnlink listen`"),
        })
    }

    /// The tree filters (`--descendants-of`, `--exclude-descendants-of`, `--container`, `--unit`).
    fn tree_filter(&self) -> anyhow::Result<TreeFilter> {
        let bad = self.containers.iter().find(|c| c.is_empty() || !c.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Some(c) = bad {
            bail!("--container {c:?}: a container id is hex digits (a full id or a prefix)");
        }
        let mut f = TreeFilter::default()
            .descendants_of(self.descendants_of.iter().cloned())
            .exclude_descendants_of(self.exclude_descendants_of.iter().cloned());
        for c in &self.containers {
            f = f.container(c);
        }
        for u in &self.units {
            f = f.unit(u);
        }
        Ok(f)
    }
}

pub(crate) fn run(a: ProcArgs) -> anyhow::Result<ExitCode> {
    monitor::run(config(a, "proc")?)
}

/// The monitor's configuration from the options; `command` names the recording's session (`proc`, `record`).
pub(crate) fn config(a: ProcArgs, command: &'static str) -> anyhow::Result<Config> {
    a.sink.check()?;
    let all = a.all || a.everything;
    let selection = match (&a.events, all) {
        (Some(_), true) => bail!("-e and -E/-X are exclusive"),
        (Some(list), false) => Selection::parse(list)?,
        (None, _) => Selection::ALL,
    };
    let uids = a.uids.iter().map(|u| resolve_uid(u)).collect::<anyhow::Result<Vec<_>>>()?;
    if a.realtime || a.everything {
        // forkstat's -X turns this on for everyone; without CAP_SYS_NICE the monitor still works, just not FIFO.
        if let Err(e) = crate::sys::set_realtime() {
            eprintln!("cnlink: warning: no real-time scheduling ({e}; -r needs CAP_SYS_NICE); going on without it");
        }
    }
    if a.tree && a.format != ProcFormat::Text {
        bail!("--tree is a text view: it cannot be combined with --format json or ecs");
    }
    let tree_filter = a.tree_filter()?;
    let mut filters = Config::process_filter({
        let f = ProcFilter::new().pids(&a.pids, a.descendants).names(&a.names).uids(&uids);
        match a.pgrp {
            Some(g) => f.pgrp(g),
            None => f,
        }
    });
    let tree_filtered = tree_filter.is_active();
    if tree_filtered {
        filters.push(Box::new(tree_filter) as Box<dyn RecordFilter>);
    }
    let cfg = Config {
        selection,
        format: a.format,
        tree: a.tree,
        tree_filtered,
        enrich: !a.no_enrich,
        style: a.text.style(),
        columns: a.text.columns(a.everything),
        line_buffered: a.line_buffered || std::io::stdout().is_terminal(),
        quiet: a.quiet,
        stats: a.stats || a.everything || a.quiet,
        duration: a.duration,
        filters,
        rcvbuf: a.rcvbuf,
        batch_latency: a.batch_latency,
        queue: a.queue,
        cache_max: a.cache_max,
        ancestry_depth: a.ancestry_depth,
        kernel_filter: !a.no_kernel_filter,
        ack_timeout: a.ack_timeout,
        metrics: a.service.metrics,
        record: a.record.map(|path| RecordTo { path, rotation: a.rotation, command }),
        replay: None,
        sink: a.sink.sink_url.is_some().then_some(a.sink),
    };
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn uids() {
        assert_eq!(resolve_uid("0").unwrap(), 0);
        assert_eq!(resolve_uid("root").unwrap(), 0);
        assert!(resolve_uid("no-such-user-here").is_err());
    }
}
