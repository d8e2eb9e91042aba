//! `cnlink listen`: dump the connector traffic of a group or an id, decoded where the kind is known. A receive
//! buffer overrun is printed and counted, never fatal.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cnlink::socket::Protocol;
use cnlink::wire::{CbId, NlAddr, PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN};
use cnlink::{ClientItem, Connector, MatchRule, Trust};

use super::{parse_duration, parse_size, Format};
use crate::cmd::send::Printer;

/// Dump connector traffic.
#[derive(Debug, clap::Args)]
#[command(after_help = "Joining group 1 (the proc connector) also subscribes to process events, so that the kernel \
sends them, and unsubscribes at the end. When the receive buffer overflows (a burst faster than the terminal), \
the kernel drops messages: that is printed as an `overrun` line and counted, and listening goes on.")]
pub(crate) struct ListenArgs {
    /// Multicast group(s) to join (on the connector, the idx of the sender's id).
    #[arg(short, long = "group", value_name = "N", value_delimiter = ',')]
    groups: Vec<u32>,
    /// Only messages for this id (IDX.VAL); joins group IDX.
    #[arg(long, value_name = "IDX.VAL")]
    id: Option<CbId>,
    /// Stop after this many messages.
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long.
    #[arg(short = 'D', long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Socket receive buffer (forced past rmem_max when privileged), e.g. 32M; what the kernel granted is in
    /// the final count.
    #[arg(long, value_name = "BYTES", default_value = "32M", value_parser = parse_size)]
    rcvbuf: usize,
    /// Say on stderr what the kernel granted at the start.
    #[arg(short, long)]
    verbose: bool,
}

pub(crate) fn run(a: ListenArgs) -> anyhow::Result<ExitCode> {
    let mut groups = a.groups.clone();
    if let Some(id) = a.id {
        groups.push(id.idx);
    }
    groups.sort_unstable();
    groups.dedup();
    if groups.is_empty() {
        bail!("give --group N or --id IDX.VAL");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    let mut c = Connector::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::Documented, Trust::Anyone)
        .context("opening a connector socket")?;
    let granted = c.socket().set_recv_buffer(a.rcvbuf).context("setting the receive buffer")?;
    if a.verbose {
        eprintln!("cnlink listen: receive buffer {granted} bytes (asked for {})", a.rcvbuf);
    }
    for &g in &groups {
        c.join(g).with_context(|| format!("joining group {g}"))?;
    }
    let proc_group = groups.contains(&CbId::PROC.idx);
    if proc_group {
        c.send(CbId::PROC, &PROC_CN_MCAST_LISTEN.to_ne_bytes()).context("subscribing to process events")?;
    }
    let result = listen(&mut c, &a, &stop);
    if proc_group {
        let _ = c.send(CbId::PROC, &PROC_CN_MCAST_IGNORE.to_ne_bytes());
    }
    let shown = result?;
    let n = c.counters();
    eprintln!(
        "cnlink listen: {shown} messages shown, {} received, {} overruns, {} dropped, {} rejected; receive buffer \
         {granted} bytes",
        n.received, n.overruns, n.dropped, n.rejected
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints what arrives until the count, the duration or a signal says stop; returns how many messages it showed.
fn listen(c: &mut Connector, a: &ListenArgs, stop: &AtomicBool) -> anyhow::Result<u64> {
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut out = std::io::stdout().lock();
    let mut printer = Printer::new(a.format);
    let mut shown = 0u64;
    while !stop.load(Ordering::Acquire) && a.count.is_none_or(|n| shown < n) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            break;
        }
        let wait = left.unwrap_or(Duration::from_millis(200)).min(Duration::from_millis(200));
        match c.recv(Some(wait)).context("receiving")? {
            Some(ClientItem::Message(msg)) if a.id.is_none_or(|id| id == msg.hdr.id) => {
                shown += 1;
                printer.message(&mut out, &msg)?;
            }
            Some(ClientItem::Overrun) => printer.overrun(&mut out, c.counters().overruns)?,
            _ => {}
        }
        // Flush once what one receive brought is printed.
        if c.core().queued() == 0 {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(shown)
}
