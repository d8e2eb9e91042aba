//! JSON string text from bytes, as both JSON writers (the native JSON of `cnlink proc` and the ECS documents)
//! escape it.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as the inside of a JSON string: quotes, backslashes and control characters escaped (`\n`, `\t`,
/// `\r`, else `\u00XX`, DEL included), sequences that are not UTF-8 as U+FFFD.
///
/// ```
/// let mut out = Vec::new();
/// cnlink_procmon::json_text::escape_into(&mut out, b"a\"b\x1b\xff");
/// assert_eq!(out, "a\\\"b\\u001b\u{fffd}".as_bytes());
/// ```
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\t' => b"\\t",
                b'\r' => b"\\r",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            if esc.is_empty() {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            } else {
                out.extend_from_slice(esc);
            }
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}
