//! A printer for any datagram: every netlink header, every `cn_msg`, proc events decoded, other data in hex.
//!
//! The CLI's `decode`, `listen` and `send`, the fuzz targets and the tests share it. Nothing a sender controls
//! reaches the output raw: text from the wire (a process name) goes through [`Escaped`], other data is hex.

use core::fmt::{self, Write as _};

use super::cn_msg::CnMsgs;
use super::exit_status::ExitStatus;
use super::ids::CbId;
use super::netlink::{NlKind, NlMessages, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN};
use super::proc_event::{EventData, ProcEvent};

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

/// Displays bytes as text that is safe to print on a terminal: an escape sequence, a carriage return or a
/// backspace from a sender shows as text instead of acting. Escaped, as `journalctl` does:
/// - C0 controls, DEL and C1 controls (UTF-8 encoded or raw), and bytes that are not UTF-8, as `\xHH`;
/// - the backslash, as `\\`, so that an escape is never ambiguous;
/// - Unicode's reordering and line controls (bidi overrides and isolates, U+2028, U+2029), as `\u{HHHH}`.
///
/// Everything else passes unchanged. Width and alignment (`{:<15}`) apply to the escaped text.
///
/// ```
/// use cnlink::wire::pretty::Escaped;
/// assert_eq!(Escaped(b"ls\x1b[2J\r\xff").to_string(), r"ls\x1b[2J\x0d\xff");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(self.0.len());
        escape_into(&mut out, self.0);
        // Escaping leaves only valid UTF-8.
        f.pad(core::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Appends `bytes` to `out` escaped as [`Escaped`] displays them, with no buffer of its own: for writers that
/// format many names per second.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |out: &mut Vec<u8>, b: u8| {
        out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
    };
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut start = 0;
        for (i, c) in valid.char_indices() {
            let plain = !matches!(
                c,
                '\\'
                    | '\0'..='\x1f'
                    | '\x7f'..='\u{9f}'
                    | '\u{200e}'
                    | '\u{200f}'
                    | '\u{202a}'..='\u{202e}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{2028}'
                    | '\u{2029}'
            );
            if plain {
                continue;
            }
            out.extend_from_slice(&valid.as_bytes()[start..i]);
            start = i + c.len_utf8();
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x100 => hex(out, c as u32 as u8),
                c => out.extend_from_slice(format!("\\u{{{:04x}}}", c as u32).as_bytes()),
            }
        }
        out.extend_from_slice(&valid.as_bytes()[start..]);
        for &b in chunk.invalid() {
            hex(out, b);
        }
    }
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
                let name = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(comm.len())];
                write!(f, " process_pid={process_pid} process_tgid={process_tgid} comm=\"{}\"", Escaped(name))
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
    fn control_characters_are_escaped() {
        let cases: [(&[u8], &str); 9] = [
            (b"plain text \xc3\xa9 \xe2\x9c\x93", "plain text \u{e9} \u{2713}"),
            (b"\x1b[31mred", r"\x1b[31mred"),
            (b"a\rb\x07c\x7f\x00", r"a\x0db\x07c\x7f\x00"),
            (b"\x9b2J", r"\x9b2J"),
            ("\u{9b}2J".as_bytes(), r"\x9b2J"),
            (b"tab\there\n", r"tab\x09here\x0a"),
            (b"back\\slash", r"back\\slash"),
            ("a\u{202e}b\u{2028}".as_bytes(), r"a\u{202e}b\u{2028}"),
            (b"caf\xc3", r"caf\xc3"),
        ];
        for (bytes, want) in cases {
            assert_eq!(Escaped(bytes).to_string(), want, "{bytes:?}");
        }
        assert_eq!(format!("[{:<6}]", Escaped(b"a\x1b")), r"[a\x1b ]", "padding applies to the escaped text");
        let all: Vec<u8> = (0..=255).collect();
        assert!(Escaped(&all).to_string().chars().all(|c| !c.is_control()));
    }

    #[test]
    fn a_hostile_comm_is_printed_escaped() {
        let mut comm = [0u8; 16];
        comm[..11].copy_from_slice(b"\x1b]52;c;\x07\r\x7f\x9b");
        let ev = ProcEvent { cpu: 0, timestamp_ns: 1, data: EventData::Comm { process_pid: 5, process_tgid: 5, comm } };
        let mut data = [0u8; 40];
        ev.emit(&mut data).unwrap();
        let hdr = crate::wire::CnMsgHdr { id: CbId::PROC, ..Default::default() };
        let s = Pretty(&crate::wire::datagram(hdr, &data, 0).unwrap()).to_string();
        assert!(s.contains(r#"comm="\x1b]52;c;\x07\x0d\x7f\x9b""#), "{s}");
        assert!(!s.bytes().any(|b| b.is_ascii_control() && b != b'\n' || b >= 0x80), "{s:?}");
    }

    #[test]
    fn prints_garbage_as_hex() {
        let s = Pretty(&[0xff; 20]).to_string();
        assert!(s.starts_with("malformed netlink message at offset 0"), "{s}");
        assert!(s.contains("0000: ff ff"), "{s}");
    }

    mod escaping {
        use super::super::*;

        fn esc(b: &[u8]) -> String {
            let mut v = Vec::new();
            escape_into(&mut v, b);
            String::from_utf8(v).expect("escaped text is UTF-8")
        }

        #[test]
        fn controls_are_escaped() {
            assert_eq!(esc(b"\x1b]0;title\x07\rfake"), "\\x1b]0;title\\x07\\x0dfake");
            assert_eq!(esc(b"a\tb\nc\x7f\x00"), "a\\x09b\\x0ac\\x7f\\x00");
            assert_eq!(esc(b"back\\slash"), "back\\\\slash");
        }

        #[test]
        fn c1_controls_in_utf8_and_raw_bytes_are_escaped() {
            assert_eq!(esc("x\u{9b}31m".as_bytes()), "x\\x9b31m");
            assert_eq!(esc(b"x\x9b31m"), "x\\x9b31m");
            assert_eq!(esc(b"\xff\xfe"), "\\xff\\xfe");
            assert_eq!(esc(b"caf\xc3"), "caf\\xc3");
        }

        #[test]
        fn printable_text_is_kept() {
            assert_eq!(esc("héllo wörld ✓ /usr/bin/ls -l".as_bytes()), "héllo wörld ✓ /usr/bin/ls -l");
            assert_eq!(esc(b""), "");
        }

        #[test]
        fn reordering_controls_are_escaped() {
            assert_eq!(esc("a\u{202e}b\u{2028}c".as_bytes()), "a\\u{202e}b\\u{2028}c");
        }

        #[test]
        fn display_pads_the_escaped_text() {
            assert_eq!(format!("[{:<6}]", Escaped(b"a\x1b")), "[a\\x1b ]");
        }

        #[test]
        fn every_escaped_output_is_free_of_controls() {
            let all: Vec<u8> = (0..=255u8).collect();
            let out = esc(&all);
            assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
        }
    }
}
