//! Terminal-safe text: bytes another process chose (names, command lines, paths, payloads) are printed with every
//! control character escaped, so that nobody can retitle, clear or rewrite the terminal of whoever watches.
//!
//! Escaped, in `\xHH` form as `journalctl` and systemd's `cescape` do:
//! - C0 controls (U+0000-U+001F) and DEL (U+007F);
//! - C1 controls (U+0080-U+009F), whether encoded in UTF-8 or as raw bytes;
//! - bytes that are not valid UTF-8 (a terminal in a legacy 8-bit mode reads 0x9B as CSI);
//! - the backslash itself (`\\`), so that an escape can always be told from text that looks like one.
//!
//! Unicode's invisible reordering and line controls (bidi overrides and isolates, U+2028/U+2029) are escaped as
//! `\u{HHHH}`: they can make a line read differently from what it holds. Everything else is printed as is.

use std::fmt;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` to `out` with control characters escaped.
pub(crate) fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                escape_str(out, s);
                return;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // The first `valid_up_to` bytes are valid UTF-8, by the error's contract.
                escape_str(out, std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len()).max(1).min(after.len());
                for &b in &after[..bad] {
                    hex_byte(out, b);
                }
                rest = &after[bad..];
            }
        }
    }
}

fn escape_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape = matches!(c, '\0'..='\x1f' | '\\' | '\x7f'..='\u{9f}' | '\u{2028}' | '\u{2029}')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if !escape {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + c.len_utf8();
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x100 => hex_byte(out, c as u32 as u8),
            c => out.extend_from_slice(format!("\\u{{{:04x}}}", c as u32).as_bytes()),
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

fn hex_byte(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// Displays bytes (or a string) terminal-safe, as [`escape_into`] writes them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl<'a> Escaped<'a> {
    /// A string, escaped.
    pub(crate) fn str(s: &'a str) -> Self {
        Escaped(s.as_bytes())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(self.0.len());
        escape_into(&mut out, self.0);
        // Escaping leaves only valid UTF-8.
        f.pad(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(format!("[{:<6}]", Escaped::str("a\x1b")), "[a\\x1b ]");
    }

    #[test]
    fn every_escaped_output_is_free_of_controls() {
        let all: Vec<u8> = (0..=255u8).collect();
        let out = esc(&all);
        assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
    }
}
