//! `cnlink listen`: dump the connector traffic of a group or an id, decoded where the kind is known. A receive
//! buffer overrun is printed and counted, never fatal.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cnlink::proc::{Tap, TapEvent};
use cnlink::socket::Protocol;
use cnlink::wire::{CbId, NlAddr, PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN};
use cnlink::{ClientItem, Connector, MatchRule, Trust};
use cnlink_capture::{monotonic_to_wall, proc_event_timestamp, FileHeader, HostInfo, Loss, LossKind, Record};

use super::{parse_duration, parse_size, Format};
use crate::cmd::send::Printer;
use crate::record::{self, wall_ns, Entry, RecordArgs, RecordTx, Session};

/// Dump connector traffic.
#[derive(Debug, clap::Args)]
#[command(after_help = "Joining group 1 (the proc connector) also subscribes to process events, so that the kernel \
sends them, and unsubscribes at the end. When the receive buffer overflows (a burst faster than the terminal), \
the kernel drops messages: that is printed as an `overrun` line and counted, and listening goes on.\n\nWith \
--record FILE, every datagram received is also written to FILE (pcapng, readable by tshark and `cnlink replay`), \
byte for byte as received, before it is decoded (one that does not decode too), on a thread of its own: overruns \
and what that thread could not keep up with are written as loss records.")]
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
    /// Also write every datagram received to this pcapng file.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    #[command(flatten)]
    rotation: RecordArgs,
}

/// Entries that may wait for the recording thread before more are dropped (and counted).
const RECORD_QUEUE: usize = 1 << 16;

/// The recording side of `listen`: the connector's tap hands the writer thread every datagram as received,
/// before it is decoded (one that does not decode is written too), and every overrun; the main loop adds the
/// connector's own queue drops.
struct Recorder {
    tx: RecordTx,
    /// The connector's queue drops already recorded.
    dropped: u64,
}

/// A loss record of `kind` dated now.
fn loss(kind: LossKind, count: Option<u64>) -> (u64, Entry) {
    let now = wall_ns();
    let loss = Loss { kind, count, lower_bound: false, cpu: None, timestamp_ns: now, before: None };
    (now, Entry::Record(Record::Loss(loss)))
}

/// The tap that records: `offset` (`realtime - monotonic` at start) dates a proc event by its kernel time.
fn tap(mut tx: RecordTx, offset: i64) -> Tap {
    Box::new(move |ev| match ev {
        TapEvent::Received { meta, datagram, .. } => {
            let now = wall_ns();
            let ts = proc_event_timestamp(datagram).map_or(now, |t| monotonic_to_wall(t, offset));
            let bytes = Arc::from(datagram);
            let from_kernel = meta.from.port == 0;
            tx.send(
                now,
                Entry::Datagram { timestamp_ns: ts, protocol: cnlink_capture::NETLINK_CONNECTOR, from_kernel, bytes },
            );
        }
        TapEvent::Overrun { .. } => {
            let (now, entry) = loss(LossKind::Overrun, None);
            tx.send(now, entry);
        }
        _ => {}
    })
}

impl Recorder {
    /// Records the connector's own queue drops since the last call.
    fn drops(&mut self, dropped: u64) {
        if dropped > self.dropped {
            let (now, entry) = loss(LossKind::Queue, Some(dropped - self.dropped));
            self.tx.send(now, entry);
            self.dropped = dropped;
        }
    }
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
    let mut recording = None;
    let mut recorder = None;
    if let Some(path) = &a.record {
        let host = HostInfo::collect();
        let offset = host.monotonic_to_realtime_ns();
        let session = Session { groups: groups.clone(), ..Session::new("listen") };
        let header = FileHeader::netlink(&[cnlink_capture::NETLINK_CONNECTOR])
            .with_host(host)
            .with_record(session.record(wall_ns()));
        let (tx, rx) = record::channel(RECORD_QUEUE);
        recording = Some(record::spawn(a.rotation.config(path), header, rx)?);
        c.set_tap(tap(tx.clone(), offset));
        recorder = Some(Recorder { tx, dropped: 0 });
    }
    let proc_group = groups.contains(&CbId::PROC.idx);
    if proc_group {
        c.send(CbId::PROC, &PROC_CN_MCAST_LISTEN.to_ne_bytes()).context("subscribing to process events")?;
    }
    let result = listen(&mut c, &a, &stop, recorder.as_mut());
    if proc_group {
        let _ = c.send(CbId::PROC, &PROC_CN_MCAST_IGNORE.to_ne_bytes());
    }
    if let Some(mut r) = recorder {
        r.drops(c.counters().dropped);
    }
    // The tap holds a sender too: the writer thread ends once both are gone.
    drop(c.take_tap());
    if let Some(rec) = recording {
        let w = rec.finish()?;
        let files: Vec<String> = w.files.iter().map(|f| f.display().to_string()).collect();
        eprintln!(
            "cnlink listen: recorded {} datagrams and {} records to {}; {} missed by the recording thread",
            w.packets,
            w.records,
            files.join(", "),
            w.missed
        );
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
/// At a stop by duration or signal, what was already received (and recorded) is printed first.
fn listen(
    c: &mut Connector,
    a: &ListenArgs,
    stop: &AtomicBool,
    mut recorder: Option<&mut Recorder>,
) -> anyhow::Result<u64> {
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut out = std::io::stdout().lock();
    let mut printer = Printer::new(a.format);
    let mut shown = 0u64;
    while a.count.is_none_or(|n| shown < n) {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let stopping = stop.load(Ordering::Acquire) || left.is_some_and(|l| l.is_zero());
        if stopping && c.core().queued() == 0 {
            break;
        }
        // Stopping: only what is queued, without waiting.
        let wait =
            if stopping { Duration::ZERO } else { left.unwrap_or(Duration::MAX).min(Duration::from_millis(200)) };
        let item = c.recv(Some(wait)).context("receiving")?;
        if let Some(r) = recorder.as_deref_mut() {
            r.drops(c.counters().dropped);
        }
        match item {
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
