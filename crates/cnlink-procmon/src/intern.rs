//! Interning of the strings many processes share (names, paths, cgroup files), so that a table of 100,000
//! processes holds each distinct value once. Values no process holds any more are swept out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::container::CgroupInfo;
use crate::BStr;

/// The size at which the first sweep happens; after a sweep, the next one waits until the set doubles.
const FIRST_SWEEP: usize = 4096;

/// Shared byte strings.
#[derive(Debug)]
pub(crate) struct Interner {
    set: HashSet<BStr>,
    sweep_at: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner { set: HashSet::new(), sweep_at: FIRST_SWEEP }
    }
}

impl Interner {
    /// The shared copy of `b`.
    pub(crate) fn intern(&mut self, b: &[u8]) -> BStr {
        if let Some(s) = self.set.get(b) {
            return s.clone();
        }
        if self.set.len() >= self.sweep_at {
            self.set.retain(|s| s.strong_count() > 1);
            self.sweep_at = (self.set.len() * 2).max(FIRST_SWEEP);
        }
        let s = BStr::from(b);
        self.set.insert(s.clone());
        s
    }

    /// Bytes held: the strings and their `Arc` headers.
    pub(crate) fn bytes(&self) -> usize {
        self.set.iter().map(|s| s.len() + 16).sum::<usize>() + self.set.capacity() * std::mem::size_of::<BStr>()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// Classified cgroup files, keyed by their contents.
#[derive(Debug)]
pub(crate) struct CgroupInterner {
    map: HashMap<BStr, Arc<CgroupInfo>>,
    sweep_at: usize,
}

impl Default for CgroupInterner {
    fn default() -> Self {
        CgroupInterner { map: HashMap::new(), sweep_at: FIRST_SWEEP }
    }
}

impl CgroupInterner {
    /// The shared classification of a cgroup file.
    pub(crate) fn intern(&mut self, raw: &[u8], truncated: bool, max_lines: usize) -> Arc<CgroupInfo> {
        if let Some(info) = self.map.get(raw) {
            if info.truncated == truncated {
                return info.clone();
            }
        }
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, info| Arc::strong_count(info) > 1);
            self.sweep_at = (self.map.len() * 2).max(FIRST_SWEEP);
        }
        let info = Arc::new(CgroupInfo::parse(raw, truncated, max_lines));
        self.map.insert(info.raw.clone(), info.clone());
        info
    }

    /// Bytes held, roughly: each file twice (raw and path) plus the classification.
    pub(crate) fn bytes(&self) -> usize {
        self.map.values().map(|i| i.raw.len() + i.path.len() + std::mem::size_of::<CgroupInfo>() + 64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_sweeps() {
        let mut i = Interner::default();
        let a = i.intern(b"bash");
        let b = i.intern(b"bash");
        assert!(BStr::ptr_eq(&a, &b));
        for n in 0..10_000 {
            i.intern(format!("name-{n}").as_bytes());
        }
        // Unused names were swept; the one still held survived.
        assert!(i.len() < 10_000);
        assert!(BStr::ptr_eq(&a, &i.intern(b"bash")));
        let mut c = CgroupInterner::default();
        let x = c.intern(b"0::/a.slice/b.service\n", false, 64);
        let y = c.intern(b"0::/a.slice/b.service\n", false, 64);
        assert!(Arc::ptr_eq(&x, &y));
        assert!(c.bytes() > 0);
    }
}
