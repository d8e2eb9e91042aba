//! A JSON writer into a byte buffer, for nested objects with fixed keys: no allocation per value.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends JSON to a buffer. Keys are the caller's constants (written as given); values are escaped.
#[derive(Debug, Default)]
pub(crate) struct Json {
    pub(crate) buf: Vec<u8>,
    /// No member written yet in the innermost open object or array.
    first: bool,
}

impl Json {
    pub(crate) fn new() -> Json {
        Json { buf: Vec::with_capacity(1 << 16), first: true }
    }

    fn comma(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    fn key(&mut self, k: &str) {
        self.comma();
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Opens the document.
    pub(crate) fn begin_doc(&mut self) {
        self.buf.push(b'{');
        self.first = true;
    }

    /// Closes the document and its line.
    pub(crate) fn end_doc(&mut self) {
        self.buf.extend_from_slice(b"}\n");
        self.first = true;
    }

    /// Opens an object under `k`.
    pub(crate) fn open(&mut self, k: &str) {
        self.key(k);
        self.buf.push(b'{');
        self.first = true;
    }

    /// Opens an object as an array element.
    pub(crate) fn open_elem(&mut self) {
        self.comma();
        self.buf.push(b'{');
        self.first = true;
    }

    /// Closes the innermost object.
    pub(crate) fn close(&mut self) {
        self.buf.push(b'}');
        self.first = false;
    }

    /// Opens an array under `k`.
    pub(crate) fn open_array(&mut self, k: &str) {
        self.key(k);
        self.buf.push(b'[');
        self.first = true;
    }

    /// Closes the innermost array.
    pub(crate) fn close_array(&mut self) {
        self.buf.push(b']');
        self.first = false;
    }

    pub(crate) fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    pub(crate) fn i64(&mut self, k: &str, v: i64) {
        self.key(k);
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    pub(crate) fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf.extend_from_slice(if v { b"true" } else { b"false" });
    }

    /// A string of plain ASCII the caller vouches for (names of kinds, hex): no escaping.
    pub(crate) fn ascii(&mut self, k: &str, v: &str) {
        debug_assert!(v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && !v.contains(['"', '\\']));
        self.key(k);
        self.buf.push(b'"');
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(b'"');
    }

    /// A number given as decimal text, in a string (ECS keeps ids as keywords).
    pub(crate) fn id_string(&mut self, k: &str, v: u64) {
        self.key(k);
        self.buf.push(b'"');
        self.buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self.buf.push(b'"');
    }

    /// Bytes as a JSON string: valid UTF-8 kept, quotes, backslashes and control characters escaped, invalid
    /// sequences replaced by U+FFFD.
    pub(crate) fn bytes(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.string(v);
    }

    /// An array element: bytes as a JSON string.
    pub(crate) fn bytes_elem(&mut self, v: &[u8]) {
        self.comma();
        self.string(v);
    }

    /// An array element: plain ASCII.
    pub(crate) fn ascii_elem(&mut self, v: &str) {
        self.comma();
        self.buf.push(b'"');
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(b'"');
    }

    /// Opens a string value under `k`, for text written piecewise with [`Json::string_part`].
    pub(crate) fn open_string(&mut self, k: &str) {
        self.key(k);
        self.buf.push(b'"');
    }

    pub(crate) fn close_string(&mut self) {
        self.buf.push(b'"');
    }

    /// Writes `s` escaped, inside an open string.
    pub(crate) fn string_part(&mut self, s: &[u8]) {
        crate::json_text::escape_into(&mut self.buf, s);
    }

    fn string(&mut self, s: &[u8]) {
        self.buf.push(b'"');
        self.string_part(s);
        self.buf.push(b'"');
    }

    /// Raw bytes under `k`, which the caller guarantees are one JSON value.
    pub(crate) fn raw(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.buf.extend_from_slice(v);
    }

    /// 16 bytes as 32 lowercase hex digits in a string.
    pub(crate) fn hex(&mut self, k: &str, v: &[u8]) {
        self.key(k);
        self.buf.push(b'"');
        for &b in v {
            self.buf.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        self.buf.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_and_escapes_are_valid_json() {
        let mut j = Json::new();
        j.begin_doc();
        j.open("a");
        j.u64("n", 7);
        j.open_array("l");
        j.bytes_elem(b"x\"y\\z\n\x01\x7f\xffok\xc3\xa9");
        j.ascii_elem("b");
        j.close_array();
        j.open("empty");
        j.close();
        j.close();
        j.bool("t", true);
        j.hex("h", &[0xab, 0x01]);
        j.id_string("u", 1000);
        j.end_doc();
        let v: serde_json::Value = serde_json::from_slice(&j.buf).unwrap();
        assert_eq!(v["a"]["l"][0], "x\"y\\z\n\u{1}\u{7f}\u{fffd}oké");
        assert_eq!((v["a"]["n"].as_u64(), v["t"].as_bool(), v["h"].as_str()), (Some(7), Some(true), Some("ab01")));
        assert_eq!(v["u"], "1000");
        assert!(v["a"]["empty"].as_object().unwrap().is_empty());
        assert!(j.buf.ends_with(b"}\n"));
    }
}
