//! `cnlink collect`: the fleet's events from the JetStream stream `cnlink proc --sink` publishes to, through a
//! pull consumer, as JSON Lines as published, or through `cnlink proc`'s text, tree and ECS writers
//! ([`crate::sink::fleet`]); with `--audit`, the proof per host and boot that nothing was lost unaccounted for
//! (docs/sink.md).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cnlink_sink::collect::{self, CollectConfig, CollectedKind, Delivery};
use cnlink_sink::{AuditReport, Auditor, BootReport};

use super::parse_duration;
use super::text_flags::TextFlags;
use crate::service::daemon::Daemon;
use crate::service::metrics::Metrics;
use crate::service::ServiceArgs;
use crate::sink::fleet::{FleetFormat, FleetLook, FleetView};
use crate::sink::nats_flags::NatsFlags;

/// Malformed messages described one by one on stderr; the rest are only counted.
const MALFORMED_SAID: u64 = 10;

/// Output formats of `cnlink collect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CollectFormat {
    /// `cnlink proc`'s text columns (with a Host column once a second host is seen); ledger records are not
    /// shown.
    Text,
    /// JSON Lines: each record as published (`cnlink proc`'s native JSON with `host_id`, `boot_id` and
    /// `sink_seq` in front; ledger records with `"type":"ledger"`).
    Json,
    /// Elastic Common Schema documents (docs/ecs.md), each naming its host; ledger records are not shown.
    Ecs,
}

/// Collect events from JetStream.
#[derive(Debug, clap::Args)]
#[command(after_help = "Records go to stdout in stream order; with --audit, a report at the end (JSON: one \
{\"type\":\"audit\",...} line) and exit status 1 when anything is unaccounted for. Malformed messages are \
counted, acknowledged and skipped. Ctrl-C stops with exit status 0 (or the audit's).")]
pub(crate) struct CollectArgs {
    /// The servers: nats://HOST:PORT[,HOST:PORT...] (or tls://).
    #[arg(value_name = "URLS")]
    servers: String,
    /// The stream.
    #[arg(long, value_name = "NAME", default_value = "CNLINK")]
    stream: String,
    /// A durable consumer: a later run resumes after what this one acknowledged. Default: cnlink-collect, or
    /// with --audit a consumer of this run only, from the stream's first message.
    #[arg(long, value_name = "NAME")]
    durable: Option<String>,
    /// Only subjects matching this filter (NATS wildcards), e.g. cnlink.*.proc.exec or cnlink.web01.>.
    #[arg(long, value_name = "FILTER")]
    subject: Option<String>,
    /// Check per host and boot that the sink sequence numbers are continuous and agree with the ledgers;
    /// report missing counts by stage (kernel, queue, spool, transit) at the end.
    #[arg(long)]
    audit: bool,
    /// Print no records, only the audit report and the counts.
    #[arg(short, long)]
    quiet: bool,
    /// Stop after this long (seconds, or with a unit: 500ms, 2m).
    #[arg(short = 'D', long, value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop once nothing came for this long and nothing is pending: the stream is read to its end.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    idle_exit: Option<Duration>,
    /// While the server or the stream cannot be reached, try again for this long after the last message, then
    /// stop with exit status 2 (with --audit, after the audit of what was read).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    retry_for: Duration,
    /// Output format: json (as published), text (`cnlink proc`'s columns) or ecs.
    #[arg(long, value_enum, default_value_t = CollectFormat::Json)]
    format: CollectFormat,
    /// Text: indent each process under its parent, per host.
    #[arg(long)]
    tree: bool,
    #[command(flatten)]
    text: TextFlags,
    /// Flush after every line (the default when stdout is a terminal).
    #[arg(short = 'l', long = "line-buffered")]
    line_buffered: bool,
    #[command(flatten)]
    nats: NatsFlags,
    #[command(flatten)]
    service: ServiceArgs,
}

pub(crate) fn run(a: CollectArgs) -> anyhow::Result<ExitCode> {
    let text_options = a.tree || a.text.any();
    if text_options && a.format != CollectFormat::Text {
        anyhow::bail!("--tree, -x, -c, -d, -s, -g and --cgroup go with --format text");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    let connect = a.nats.access().connect_config(&a.servers)?;
    let mut config = CollectConfig::new(connect);
    config.stream = a.stream.clone();
    config.durable = match (&a.durable, a.audit) {
        (Some(name), _) => Some(name.clone()),
        (None, true) => None,
        (None, false) => config.durable,
    };
    config.filter_subject = a.subject.clone();
    config.idle_exit = a.idle_exit;
    config.retry_for = a.retry_for;
    if let Some(d) = a.duration {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("cnlink-duration".into())
            .spawn(move || {
                std::thread::sleep(d);
                stop.store(true, Ordering::SeqCst);
            })
            .context("starting the duration timer")?;
    }
    let (mut daemon, metrics) = Daemon::start(a.service.metrics, Metrics::collect)?;
    daemon.ready();

    let line_buffered = a.line_buffered || std::io::stdout().is_terminal();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut auditor = a.audit.then(Auditor::new);
    let mut fleet = fleet_view(&a);
    let mut lines = Vec::new();
    if let (Some(f), false) = (&fleet, a.quiet) {
        f.header(&mut lines);
        out.write_all(&lines)?;
        out.flush()?;
    }
    let mut unreadable = 0u64;
    let mut malformed = 0u64;
    let mut trouble: Option<String> = None;
    let result = collect::collect_all(&config, &stop, |delivery| -> std::io::Result<()> {
        match delivery {
            Delivery::Record(record) => {
                trouble = None;
                let kind = match &record.kind {
                    CollectedKind::Event(_) => "event",
                    CollectedKind::Ledger(_) => "ledger",
                };
                if let Some(m) = &metrics {
                    m.message(kind);
                }
                if let Some(auditor) = &mut auditor {
                    match &record.kind {
                        CollectedKind::Event(_) => auditor.event(&record.host_id, &record.boot_id, record.sink_seq),
                        CollectedKind::Ledger(ledger) => auditor.ledger(ledger),
                    }
                }
                if !a.quiet {
                    match (&mut fleet, &record.kind) {
                        (None, _) => {
                            out.write_all(record.payload)?;
                            out.write_all(b"\n")?;
                        }
                        (Some(f), CollectedKind::Event(_)) => {
                            lines.clear();
                            if let Err(e) = f.event(&mut lines, &record.host_id, &record.boot_id, record.payload) {
                                unreadable += 1;
                                if unreadable <= MALFORMED_SAID {
                                    eprintln!(
                                        "cnlink collect: message {} on {} cannot be shown ({e}): skipped",
                                        record.stream_seq, record.subject
                                    );
                                }
                            }
                            for note in f.notes.drain(..) {
                                eprintln!("cnlink collect: {note}");
                            }
                            out.write_all(&lines)?;
                        }
                        (Some(_), CollectedKind::Ledger(_)) => {}
                    }
                    if line_buffered {
                        out.flush()?;
                    }
                }
            }
            Delivery::Malformed { stream_seq, subject, why } => {
                malformed += 1;
                if let Some(m) = &metrics {
                    m.message("malformed");
                }
                if let Some(auditor) = &mut auditor {
                    auditor.malformed();
                }
                if malformed <= MALFORMED_SAID {
                    eprintln!("cnlink collect: message {stream_seq} on {subject} is malformed ({why}): skipped");
                }
            }
            Delivery::BatchEnd => out.flush()?,
            Delivery::Retrying(error) => {
                let error = error.to_string();
                if trouble.as_ref() != Some(&error) {
                    eprintln!("cnlink collect: {error}; retrying (for {:?} without progress)", config.retry_for);
                    trouble = Some(error);
                }
            }
        }
        Ok(())
    });
    daemon.stopping();
    out.flush()?;
    let stats = match result {
        Ok(stats) => stats,
        Err(error) => {
            let error =
                anyhow::Error::new(error).context(format!("collecting from {} (stream {})", a.servers, a.stream));
            // The audit of what was read still ends stdout, marked as cut short (the exit status stays 2).
            if let Some(auditor) = auditor {
                write_audit(&mut out, &auditor.report(), Some(&format!("{error:#}")))?;
            }
            return Err(error);
        }
    };
    eprintln!(
        "cnlink collect: {} messages: {} events, {} ledger records, {} malformed{}",
        stats.received,
        stats.events,
        stats.ledgers,
        stats.malformed,
        if unreadable > 0 { format!(", {unreadable} events not shown (not native JSON)") } else { String::new() }
    );
    let Some(auditor) = auditor else { return Ok(ExitCode::SUCCESS) };
    let report = auditor.report();
    write_audit(&mut out, &report, None)?;
    Ok(if report.is_complete() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The audit as the last line of stdout, as JSON in every format, and in words on stderr, where a person looks.
fn write_audit(out: &mut impl Write, report: &AuditReport, read_error: Option<&str>) -> anyhow::Result<()> {
    out.write_all(&audit_json(report, read_error)?)?;
    out.flush()?;
    let mut text = Vec::new();
    audit_text(&mut text, report, read_error)?;
    std::io::stderr().write_all(&text)?;
    Ok(())
}

/// The text, tree or ECS view the arguments ask for (`None`: the JSON as published).
fn fleet_view(a: &CollectArgs) -> Option<FleetView> {
    let format = match (a.format, a.tree) {
        (CollectFormat::Json, _) => return None,
        (CollectFormat::Text, false) => FleetFormat::Text,
        (CollectFormat::Text, true) => FleetFormat::Tree,
        (CollectFormat::Ecs, _) => FleetFormat::Ecs,
    };
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    Some(FleetView::new(FleetLook {
        format,
        style: a.text.style(),
        columns: a.text.columns(false),
        pid_width: pid_max.map_or(7, |m| m.to_string().len()).max(5),
        own_offset_ns: crate::monitor::clock::read().realtime_minus_monotonic_ns,
    }))
}

/// The report as one JSON line: `{"type":"audit","complete":..,"malformed":..,"boots":[..]}`, with
/// `"read_error":".."` after `malformed` (and `complete` false) when the read stopped on an error.
fn audit_json(report: &AuditReport, read_error: Option<&str>) -> serde_json::Result<Vec<u8>> {
    let mut line = format!(
        "{{\"type\":\"audit\",\"complete\":{},\"malformed\":{},",
        read_error.is_none() && report.is_complete(),
        report.malformed
    )
    .into_bytes();
    if let Some(why) = read_error {
        line.extend_from_slice(b"\"read_error\":");
        serde_json::to_writer(&mut line, why)?;
        line.push(b',');
    }
    line.extend_from_slice(b"\"boots\":");
    serde_json::to_writer(&mut line, &report.boots)?;
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// The report in words, a few lines per host and boot.
fn audit_text(out: &mut impl Write, report: &AuditReport, read_error: Option<&str>) -> std::io::Result<()> {
    let verdict = match read_error {
        Some(why) => format!("INCOMPLETE: the read stopped ({})", cnlink::wire::Escaped(why.as_bytes())),
        None if report.is_complete() => "complete: nothing unaccounted for".to_owned(),
        None => "INCOMPLETE".to_owned(),
    };
    writeln!(out, "audit: {} boots, {} malformed messages: {verdict}", report.boots.len(), report.malformed)?;
    for b in &report.boots {
        boot_text(out, b)?;
    }
    Ok(())
}

fn boot_text(out: &mut impl Write, b: &BootReport) -> std::io::Result<()> {
    writeln!(
        out,
        "host {} boot {}: {} events, {} ledger records{}, {} duplicates; sink_seq {}..={}, {} missing",
        b.host_id,
        b.boot_id,
        b.events,
        b.ledgers,
        if b.saw_final_ledger { " (the last one final)" } else { "" },
        b.duplicates,
        b.first_seq,
        b.last_seq,
        b.missing
    )?;
    let l = &b.lost;
    writeln!(
        out,
        "  lost: kernel {}, queue {}, spool evicted {}, spool torn {}, disk full {}, transit {}; filtered {}",
        l.kernel, l.queue, l.spool_evicted, l.spool_torn, l.write_dropped, l.transit, b.filtered
    )?;
    if !b.missing_ranges.is_empty() {
        let ranges: Vec<String> = b
            .missing_ranges
            .iter()
            .map(|&(from, to)| if from == to { from.to_string() } else { format!("{from}..={to}") })
            .collect();
        writeln!(out, "  missing sink_seq: {}", ranges.join(", "))?;
    }
    if b.unaccounted > 0 || !b.problems.is_empty() {
        writeln!(out, "  UNACCOUNTED {}: {}", b.unaccounted, b.problems.join("; "))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnlink_sink::LedgerRecord;

    #[test]
    fn the_report_in_words_and_as_json() {
        let mut auditor = Auditor::new();
        for seq in [1, 2, 4] {
            auditor.event("h", "b", seq);
        }
        let ledger = LedgerRecord {
            host_id: "h".into(),
            boot_id: "b".into(),
            sink_seq: 5,
            kind: "ledger".into(),
            first_seq: 1,
            last_seq: 5,
            kernel_lost: 2,
            ..Default::default()
        };
        auditor.ledger(&ledger);
        let report = auditor.report();
        let mut text = Vec::new();
        audit_text(&mut text, &report, None).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("audit: 1 boots, 0 malformed messages: INCOMPLETE\n"), "{text}");
        assert!(text.contains("host h boot b: 3 events, 1 ledger records, 0 duplicates; sink_seq 1..=5, 1 missing"));
        assert!(text.contains("  lost: kernel 2, queue 0, spool evicted 0, spool torn 0, disk full 0, transit 1"));
        assert!(text.contains("  missing sink_seq: 3\n"), "{text}");
        assert!(text.contains("  UNACCOUNTED 1: "), "{text}");
        let line = audit_json(&report, None).unwrap();
        assert!(line.starts_with(br#"{"type":"audit","complete":false,"malformed":0,"boots":[{"host_id":"h""#));
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["type"], "audit");
        assert_eq!(json["complete"], false);
        assert_eq!(json["boots"][0]["missing_ranges"], serde_json::json!([[3, 3]]));
        assert_eq!(json["boots"][0]["lost"]["transit"], 1);
    }

    #[test]
    fn a_read_cut_short_still_gives_its_audit_marked_incomplete() {
        let mut auditor = Auditor::new();
        for seq in 1..=3 {
            auditor.event("h", "b", seq);
        }
        let report = auditor.report();
        let why = "collecting from nats://x (stream S): no \"stream\"\n";
        let line = audit_json(&report, Some(why)).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(json["complete"], false);
        assert_eq!(json["read_error"], why);
        assert_eq!(json["boots"][0]["events"], 3);
        let mut text = Vec::new();
        audit_text(&mut text, &report, Some(why)).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with("audit: 1 boots, 0 malformed messages: INCOMPLETE: the read stopped (collecting"),
            "{text}"
        );
        // Escaped for the terminal: the newline in the error does not break the verdict's line.
        assert!(text.lines().next().unwrap().ends_with(r#"no "stream"\x0a)"#), "{text}");
    }
}
