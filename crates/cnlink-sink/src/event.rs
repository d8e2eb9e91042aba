//! The event side: what the sink adds to each payload, and the subject tokens.
//!
//! The caller hands in an event as a JSON object (`{"event":"exec",...}`); the sink stores
//!
//! ```text
//! {"host_id":"<host>","boot_id":"<boot>","sink_seq":<n>,  + the caller's object after its `{`
//! ```
//!
//! so the fields come first and the caller's bytes are copied once, unparsed. An empty object `{}` becomes
//! `{"host_id":..,"boot_id":..,"sink_seq":n}`.

use std::borrow::Cow;

/// The longest subject token accepted for an event kind.
pub const MAX_TOKEN_LEN: usize = 64;

/// An event the sink refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is not a JSON object (it must start with `{`, after blanks, and end with `}`).
    #[error("event payload is not a JSON object")]
    NotAnObject,
    /// The event kind is empty or longer than 64 bytes.
    #[error("event kind must be 1 to 64 bytes")]
    BadKind,
    /// The record would exceed the spool's largest record (16 MiB).
    #[error("event refused by the spool: {0}")]
    TooLarge(String),
}

/// The bytes that start every payload of one (host, boot): `{"host_id":"..","boot_id":"..","sink_seq":`.
pub(crate) fn payload_prefix(host_id: &str, boot_id: &str) -> Vec<u8> {
    let mut out = b"{\"host_id\":".to_vec();
    out.extend_from_slice(json_string(host_id).as_bytes());
    out.extend_from_slice(b",\"boot_id\":");
    out.extend_from_slice(json_string(boot_id).as_bytes());
    out.extend_from_slice(b",\"sink_seq\":");
    out
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The caller's object after its `{`, preceded by the separator the prefix needs: `,"k":v...}` or `}`.
pub(crate) fn object_rest(json: &[u8]) -> Result<(&'static [u8], &[u8]), EventError> {
    let trimmed = json.trim_ascii();
    let inner = trimmed.strip_prefix(b"{").filter(|rest| rest.ends_with(b"}")).ok_or(EventError::NotAnObject)?;
    if inner[..inner.len() - 1].trim_ascii().is_empty() {
        Ok((b"", b"}"))
    } else {
        Ok((b",", inner))
    }
}

/// A subject token made safe: every byte that is not an ASCII letter, digit, `-` or `_` becomes `_` (so no
/// `.`, `*`, `>` or blank reaches a subject); an empty name becomes `_`.
pub fn subject_token(name: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() {
        return Cow::Borrowed("_");
    }
    if name.chars().all(safe) {
        return Cow::Borrowed(name);
    }
    Cow::Owned(name.chars().map(|c| if safe(c) { c } else { '_' }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(host: &str, boot: &str, seq: u64, json: &[u8]) -> Vec<u8> {
        let mut out = payload_prefix(host, boot);
        out.extend_from_slice(seq.to_string().as_bytes());
        let (sep, rest) = object_rest(json).unwrap();
        out.extend_from_slice(sep);
        out.extend_from_slice(rest);
        out
    }

    #[test]
    fn fields_are_added_in_front_of_the_callers_object() {
        let bytes = whole("web\"01", "b", 5, br#" {"event":"exec","pid":1} "#);
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["host_id"], "web\"01");
        assert_eq!(value["boot_id"], "b");
        assert_eq!(value["sink_seq"], 5);
        assert_eq!(value["event"], "exec");
        assert_eq!(value["pid"], 1);
    }

    #[test]
    fn an_empty_object_gets_only_the_fields() {
        let bytes = whole("h", "b", 1, b"{ }");
        assert_eq!(bytes, br#"{"host_id":"h","boot_id":"b","sink_seq":1}"#);
    }

    #[test]
    fn non_objects_are_refused() {
        for bad in [&b"[1]"[..], b"", b"{", b"}", b"3", b"\"x\""] {
            assert_eq!(object_rest(bad), Err(EventError::NotAnObject), "{bad:?}");
        }
    }

    #[test]
    fn tokens_lose_every_subject_metacharacter() {
        assert_eq!(subject_token("web01.example.com"), "web01_example_com");
        assert_eq!(subject_token("a*b>c d\te"), "a_b_c_d_e");
        assert_eq!(subject_token(""), "_");
        assert_eq!(subject_token("ok-name_1"), "ok-name_1");
    }
}
