//! A printer for any datagram: every netlink header, every `cn_msg`, proc events decoded, other data in hex.
//!
//! The CLI's `decode` and `listen`, the fuzz targets and the tests share it.

use core::fmt::{self, Write as _};

use super::cn_msg::CnMsgs;
use super::exit_status::ExitStatus;
use super::ids::CbId;
use super::netlink::{NlKind, NlMessages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
use super::proc_event::{comm_str, EventData, ProcEvent};

/// Displays a whole datagram, one line per structure, indented by nesting.
#[derive(Debug, Clone, Copy)]
pub struct Pretty<'a>(pub &'a [u8]);

fn type_name(t: u16) -> &'static str {
    match t {
        NLMSG_NOOP => "NOOP",
        NLMSG_ERROR => "ERROR",
        NLMSG_DONE => "DONE",
        NLMSG_OVERRUN => "OVERRUN",
        _ => "",
    }
}

impl fmt::Display for Pretty<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut consumed = 0;
        for msg in NlMessages::new(self.0) {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    writeln!(f, "malformed netlink message at offset {consumed}: {e}")?;
                    return hexdump(f, &self.0[consumed.min(self.0.len())..], "  ");
                }
            };
            consumed += super::netlink::nlmsg_align(msg.nlmsg_len() as usize);
            let h = msg.header();
            writeln!(
                f,
                "nlmsghdr len={} type={}({}) flags={:#x} seq={} pid={}",
                h.len,
                type_name(h.ty),
                h.ty,
                h.flags,
                h.seq,
                h.pid
            )?;
            match msg.kind() {
                NlKind::Noop | NlKind::Overrun => {}
                NlKind::Error(e) => writeln!(f, "  error {}", e.map_or("(truncated)".into(), |e| e.to_string()))?,
                NlKind::Data(_) => {
                    for cn in CnMsgs::new(msg.payload()) {
                        match cn {
                            Ok(cn) => {
                                let id = cn.id();
                                writeln!(
                                    f,
                                    "  cn_msg id={}{} seq={} ack={} len={} flags={:#x}",
                                    id,
                                    id.known_name().map(|n| format!(" ({n})")).unwrap_or_default(),
                                    cn.seq(),
                                    cn.ack(),
                                    cn.len(),
                                    cn.flags()
                                )?;
                                data(f, id, cn.data())?;
                            }
                            Err(e) => writeln!(f, "  malformed cn_msg: {e}")?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn data(f: &mut fmt::Formatter<'_>, id: CbId, d: &[u8]) -> fmt::Result {
    if id == CbId::PROC {
        match ProcEvent::parse(d) {
            Ok(ev) => return writeln!(f, "    {ev}"),
            Err(_) if d.len() == 4 || d.len() == 8 => {
                if let Ok(input) = super::proc_input::ProcInput::parse(d) {
                    return writeln!(f, "    proc request {input:?}");
                }
            }
            Err(e) => writeln!(f, "    malformed proc event: {e}")?,
        }
    }
    hexdump(f, d, "    ")
}

/// Writes `bytes` as hex, 16 per line, with offsets and printable ASCII.
pub fn hexdump(f: &mut impl fmt::Write, bytes: &[u8], indent: &str) -> fmt::Result {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let mut hex = String::with_capacity(48);
        for b in chunk {
            let _ = write!(hex, "{b:02x} ");
        }
        let ascii: String =
            chunk.iter().map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '.' }).collect();
        writeln!(f, "{indent}{:04x}: {hex:<48} |{ascii}|", i * 16)?;
    }
    Ok(())
}

impl fmt::Display for ProcEvent {
    /// `fork cpu=1 timestamp_ns=... parent_pid=... ...`, fields named as in the kernel.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cpu={} timestamp_ns={}", self.data.name(), self.cpu, self.timestamp_ns)?;
        match self.data {
            EventData::Ack { err } => write!(f, " err={err}"),
            EventData::Fork { parent_pid, parent_tgid, child_pid, child_tgid } => write!(
                f,
                " parent_pid={parent_pid} parent_tgid={parent_tgid} child_pid={child_pid} child_tgid={child_tgid}"
            ),
            EventData::Exec { process_pid, process_tgid } | EventData::Sid { process_pid, process_tgid } => {
                write!(f, " process_pid={process_pid} process_tgid={process_tgid}")
            }
            EventData::Uid { process_pid, process_tgid, ruid, euid } => {
                write!(f, " process_pid={process_pid} process_tgid={process_tgid} ruid={ruid} euid={euid}")
            }
            EventData::Gid { process_pid, process_tgid, rgid, egid } => {
                write!(f, " process_pid={process_pid} process_tgid={process_tgid} rgid={rgid} egid={egid}")
            }
            EventData::Ptrace { process_pid, process_tgid, tracer_pid, tracer_tgid } => write!(
                f,
                " process_pid={process_pid} process_tgid={process_tgid} tracer_pid={tracer_pid} tracer_tgid={tracer_tgid}"
            ),
            EventData::Comm { process_pid, process_tgid, comm } => {
                write!(f, " process_pid={process_pid} process_tgid={process_tgid} comm={:?}", comm_str(&comm))
            }
            EventData::Coredump { process_pid, process_tgid, parent_pid, parent_tgid } => write!(
                f,
                " process_pid={process_pid} process_tgid={process_tgid} parent_pid={parent_pid} parent_tgid={parent_tgid}"
            ),
            EventData::Exit { process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid } => write!(
                f,
                " process_pid={process_pid} process_tgid={process_tgid} exit_code={exit_code} ({}) exit_signal={} \
                 parent_pid={parent_pid} parent_tgid={parent_tgid}",
                ExitStatus::from_raw(exit_code),
                exit_signal as i32
            ),
            EventData::Unknown { what, len, data } => {
                write!(f, " what={what:#x} len={len} data=")?;
                data[..usize::from(len).min(data.len())].iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proc_event::tests::ACK_DATAGRAM;

    #[test]
    fn prints_captured_ack() {
        let s = Pretty(&ACK_DATAGRAM).to_string();
        assert!(s.contains("nlmsghdr len=76 type=DONE(3)"), "{s}");
        assert!(s.contains("cn_msg id=1.1 (cn_proc) seq=1387142 ack=1432778633 len=40"), "{s}");
        assert!(s.contains("ack cpu=1 timestamp_ns=1596913656738 err=0"), "{s}");
    }

    #[test]
    fn prints_garbage_as_hex() {
        let s = Pretty(&[0xff; 20]).to_string();
        assert!(s.starts_with("malformed netlink message at offset 0"), "{s}");
        assert!(s.contains("0000: ff ff"), "{s}");
    }
}
