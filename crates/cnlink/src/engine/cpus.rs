//! Sets of CPU numbers, and the kernel's list syntax for them (`0-3,8`, as in `/sys/devices/system/cpu/online`).

use core::fmt;

use super::loss::MAX_CPUS;

/// A set of CPU numbers below [`MAX_CPUS`].
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuSet {
    words: Vec<u64>,
}

impl CpuSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `cpu`; numbers at or above [`MAX_CPUS`] are ignored.
    pub fn insert(&mut self, cpu: u32) {
        let cpu = cpu as usize;
        if cpu >= MAX_CPUS {
            return;
        }
        if self.words.len() <= cpu / 64 {
            self.words.resize(cpu / 64 + 1, 0);
        }
        self.words[cpu / 64] |= 1 << (cpu % 64);
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        let cpu = cpu as usize;
        self.words.get(cpu / 64).is_some_and(|w| w & (1 << (cpu % 64)) != 0)
    }

    /// Empties the set (keeping its storage).
    pub fn clear(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// True when no CPU is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// How many CPUs are in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// True when every CPU of `self` is also in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.words.iter().enumerate().all(|(i, &w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// The CPUs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| (0..64).filter(move |b| w & (1 << b) != 0).map(move |b| (i * 64 + b) as u32))
    }

    /// Parses the kernel's CPU list format: comma-separated numbers and `a-b` ranges, with surrounding white
    /// space (`"0-3,8\n"`). `None` on anything else, or on a number at or above [`MAX_CPUS`].
    pub fn parse_list(text: &str) -> Option<CpuSet> {
        let mut set = CpuSet::new();
        let text = text.trim();
        if text.is_empty() {
            return Some(set);
        }
        for part in text.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
                None => {
                    let n = part.trim().parse::<u32>().ok()?;
                    (n, n)
                }
            };
            if lo > hi || hi as usize >= MAX_CPUS {
                return None;
            }
            (lo..=hi).for_each(|c| set.insert(c));
        }
        Some(set)
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut set = CpuSet::new();
        iter.into_iter().for_each(|c| set.insert(c));
        set
    }
}

/// The kernel's list format: `0-3,8`.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.iter().peekable();
        let mut first = true;
        while let Some(lo) = cpus.next() {
            let mut hi = lo;
            while cpus.peek() == Some(&(hi + 1)) {
                hi = cpus.next().unwrap_or(hi);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if hi == lo {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_kernel_list_format() {
        let set = CpuSet::parse_list("0-3,8, 10-11\n").unwrap();
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(set.to_string(), "0-3,8,10-11");
        assert_eq!(set.len(), 7);
        assert_eq!(CpuSet::parse_list("").unwrap(), CpuSet::new());
        assert!(CpuSet::parse_list("3-1").is_none());
        assert!(CpuSet::parse_list("a").is_none());
        assert!(CpuSet::parse_list("0-9000").is_none());
    }

    #[test]
    fn subsets() {
        let small: CpuSet = [1, 70].into_iter().collect();
        let big: CpuSet = [0, 1, 2, 70, 71].into_iter().collect();
        assert!(small.is_subset(&big));
        assert!(!big.is_subset(&small));
        assert!(CpuSet::new().is_subset(&small));
        let mut s = small.clone();
        s.clear();
        assert!(s.is_empty());
        assert!(!small.contains(2) && small.contains(70) && !small.contains(u32::MAX));
    }
}
