//! `cnlink record`: the process monitor without output, writing everything it receives and reads to pcapng.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use super::proc::{self, ProcArgs};
use crate::monitor;

/// Record process events.
#[derive(Debug, clap::Args)]
#[command(after_help = "Takes the options of `cnlink proc` (what they select is what the monitor subscribes to \
and reads), writes nothing to stdout, and records to FILE: every datagram from the proc connector byte for byte \
(pcapng, LINKTYPE_NETLINK, the kernel's timestamps), the /proc snapshot the process table was seeded with, every \
/proc read the monitor made, every loss, and the host. `cnlink replay FILE` shows it again, as `cnlink proc` \
would have shown it; `tshark -r FILE` reads it too. Ctrl-C or -D stops.")]
pub(crate) struct RecordCmdArgs {
    /// The capture file (with --rotate, FILE-000001.EXT, ... next to it).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    proc: ProcArgs,
}

pub(crate) fn run(a: RecordCmdArgs) -> anyhow::Result<ExitCode> {
    let mut p = a.proc;
    if p.record.is_some() {
        bail!("give the file once, as FILE (--record is for `cnlink proc`)");
    }
    p.record = Some(a.file);
    let mut cfg = proc::config(p, "record")?;
    cfg.quiet = true;
    monitor::run(cfg)
}
