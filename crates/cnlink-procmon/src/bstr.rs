//! [`BStr`]: shared bytes from `/proc` (names, paths, cgroup files) that need not be UTF-8.

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::sync::Arc;

use cnlink::wire::Escaped;

/// Bytes as `/proc` gave them: a name, a path, a cgroup file. Not assumed to be UTF-8 and not escaped; cloning
/// shares them.
///
/// `Display` writes them as [`cnlink::wire::Escaped`] does (UTF-8 where they are, control bytes and invalid
/// sequences as `\xNN`, `\\` for a backslash), so that a hostile name cannot forge lines or terminal sequences.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BStr(Arc<[u8]>);

impl BStr {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8, invalid sequences replaced by U+FFFD.
    pub fn to_str_lossy(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when both share one allocation (an interned value).
    pub fn ptr_eq(a: &BStr, b: &BStr) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }

    pub(crate) fn strong_count(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

impl Default for BStr {
    fn default() -> Self {
        BStr(Arc::from(&[][..]))
    }
}

impl From<&[u8]> for BStr {
    fn from(b: &[u8]) -> Self {
        BStr(Arc::from(b))
    }
}

impl From<&str> for BStr {
    fn from(s: &str) -> Self {
        BStr(Arc::from(s.as_bytes()))
    }
}

impl Borrow<[u8]> for BStr {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for BStr {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<[u8]> for BStr {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for BStr {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == *other.as_bytes()
    }
}

impl fmt::Display for BStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Escaped(&self.0).fmt(f)
    }
}

impl fmt::Debug for BStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", Escaped(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_output() {
        let b = BStr::from(&b"ok \x1b[31m\nx\\\xff\xc3\xa9"[..]);
        assert_eq!(b.to_string(), "ok \\x1b[31m\\x0ax\\\\\\xffé");
        assert_eq!(format!("{b:?}"), "\"ok \\x1b[31m\\x0ax\\\\\\xffé\"");
        assert!(BStr::default().is_empty());
        assert_eq!(BStr::from("sh"), "sh");
    }
}
