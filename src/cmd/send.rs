//! `cnlink send`: send one `cn_msg` to an id, optionally wait for the reply matched by seq/ack, and print it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cnlink::proc::Event;
use cnlink::socket::Protocol;
use cnlink::wire::{CbId, NlAddr, Pretty, ProcEvent};
use cnlink::{Connector, MatchRule, OwnedMsg, Trust};

use super::{parse_duration, parse_hex, Format};
use crate::monitor::json::{self, JsonWriter};

/// How a reply is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Rule {
    /// Same seq, ack + 1 (the documents' rule).
    Documented,
    /// ack + 1, any seq (the proc connector's ack).
    AckPlusOne,
    /// ack = seq + 1 (w1).
    SeqPlusOne,
    /// Same seq and ack (uvesafb).
    Echo,
    /// Same seq, any ack (dm-log).
    SeqOnly,
}

/// Send one message.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("payload").args(["data", "hex", "file"]))]
pub(crate) struct SendArgs {
    /// The id to send to (IDX.VAL or IDX:VAL; decimal, 0x hex, -1).
    id: CbId,
    /// The data as text (sent as bytes, no terminating NUL).
    #[arg(long)]
    data: Option<String>,
    /// The data as hex.
    #[arg(long)]
    hex: Option<String>,
    /// The data from a file.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Wait for the reply and print it.
    #[arg(short, long)]
    wait_reply: bool,
    /// How long to wait for the reply.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    timeout: Duration,
    /// How the reply is recognised (the proc connector's ack needs ack-plus-one and --join 1).
    #[arg(long, value_enum, default_value_t = Rule::Documented)]
    rule: Rule,
    /// Join this multicast group first (replies that are multicast, like the proc connector's ack).
    #[arg(long, value_name = "GROUP")]
    join: Vec<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(crate) fn run(a: SendArgs) -> anyhow::Result<ExitCode> {
    let data = match (&a.data, &a.hex, &a.file) {
        (Some(s), _, _) => s.as_bytes().to_vec(),
        (_, Some(h), _) => parse_hex(h).map_err(anyhow::Error::msg)?,
        (_, _, Some(p)) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        _ => Vec::new(),
    };
    let rule = match a.rule {
        Rule::Documented => MatchRule::Documented,
        Rule::AckPlusOne => MatchRule::AckPlusOne,
        Rule::SeqPlusOne => MatchRule::SeqPlusOne,
        Rule::Echo => MatchRule::Echo,
        Rule::SeqOnly => MatchRule::SeqOnly,
    };
    let mut c = Connector::open_with(Protocol::Connector, NlAddr::KERNEL, rule, Trust::PeerOnly)
        .context("opening a connector socket")?;
    for &g in &a.join {
        c.join(g).with_context(|| format!("joining group {g}"))?;
    }
    let mut out = std::io::stdout().lock();
    if !a.wait_reply {
        let (seq, ack) = c.send(a.id, &data).with_context(|| format!("sending to {}", a.id))?;
        match a.format {
            Format::Text => writeln!(out, "sent {} bytes to {} seq={seq} ack={ack}", data.len(), a.id)?,
            Format::Json => {
                let mut w = JsonWriter::new();
                w.begin();
                w.str_field("event", "sent");
                w.u64_field("idx", a.id.idx.into());
                w.u64_field("val", a.id.val.into());
                w.u64_field("seq", seq.into());
                w.u64_field("ack", ack.into());
                w.u64_field("len", data.len() as u64);
                w.end();
                out.write_all(w.bytes())?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let replied = c.request(a.id, &data, a.timeout);
    let overruns = c.counters().overruns;
    if overruns > 0 {
        eprintln!("cnlink send: {overruns} receive overruns while waiting (the kernel dropped other messages)");
    }
    match replied {
        Ok(reply) => {
            Printer::new(a.format).message(&mut out, &reply)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(cnlink::Error::Timeout(t)) => {
            eprintln!("cnlink: no reply from {} within {t:?}", a.id);
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("sending to {}", a.id))),
    }
}

/// Prints what a client receives: messages (text: the datagram as it arrived, once per datagram, through the
/// shared printer, which escapes anything a sender controls; JSON: one object per `cn_msg`, proc events with
/// the same fields as `cnlink proc`) and overruns.
pub(crate) struct Printer {
    format: Format,
    json: JsonWriter,
    /// The datagram printed last: the other messages of a bundle are in it already.
    last: Option<Arc<[u8]>>,
}

impl Printer {
    pub(crate) fn new(format: Format) -> Self {
        Printer { format, json: JsonWriter::new(), last: None }
    }

    /// Prints one received message.
    pub(crate) fn message(&mut self, out: &mut impl Write, m: &OwnedMsg) -> std::io::Result<()> {
        match self.format {
            Format::Text => {
                if self.last.as_ref().is_some_and(|d| Arc::ptr_eq(d, &m.datagram)) {
                    return Ok(());
                }
                self.last = Some(m.datagram.clone());
                let creds = m.creds.map(|c| format!(" pid={} uid={}", c.pid, c.uid)).unwrap_or_default();
                writeln!(out, "from port={} group={}{creds}", m.from.port, m.from.groups)?;
                write!(out, "{}", Pretty(&m.datagram))
            }
            Format::Json => {
                let w = &mut self.json;
                w.clear();
                match ProcEvent::parse(&m.data) {
                    Ok(ev) if m.hdr.id == CbId::PROC => {
                        let ev = Event { seq: m.hdr.seq, cpu: ev.cpu, timestamp_ns: ev.timestamp_ns, data: ev.data };
                        json::event(w, &ev);
                    }
                    _ => {
                        w.begin();
                        w.str_field("event", "message");
                        w.u64_field("idx", m.hdr.id.idx.into());
                        w.u64_field("val", m.hdr.id.val.into());
                        if let Some(name) = m.hdr.id.known_name() {
                            w.str_field("known_as", name);
                        }
                        w.u64_field("seq", m.hdr.seq.into());
                        w.u64_field("ack", m.hdr.ack.into());
                        w.u64_field("flags", m.hdr.flags.into());
                        w.u64_field("from_port", m.from.port.into());
                        w.u64_field("len", m.data.len() as u64);
                        w.hex_field("data", &m.data);
                        w.end();
                    }
                }
                out.write_all(w.bytes())
            }
        }
    }

    /// Prints an overrun: the kernel dropped datagrams for this socket; `total` overruns so far.
    pub(crate) fn overrun(&mut self, out: &mut impl Write, total: u64) -> std::io::Result<()> {
        match self.format {
            Format::Text => {
                writeln!(out, "overrun: the receive buffer was full, the kernel dropped messages ({total} so far)")
            }
            Format::Json => {
                let w = &mut self.json;
                w.clear();
                w.begin();
                w.str_field("event", "overrun");
                w.u64_field("overruns", total);
                w.end();
                out.write_all(w.bytes())
            }
        }
    }
}
