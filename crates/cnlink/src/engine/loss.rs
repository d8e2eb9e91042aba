//! Exact loss accounting for the proc connector from its per-CPU sequence numbers.
//!
//! The kernel stamps every proc connector message (events and acks alike) with a per-CPU counter in `cn_msg.seq`
//! that grows by one per message sent while anyone listens. A socket that receives every message (no kernel-side
//! filter) therefore sees, per CPU, consecutive numbers; a gap of `n` is exactly `n` messages lost to it, whether
//! to an overrun of its receive buffer or to a failed allocation in the kernel.
//!
//! What such a count is worth depends on what the socket saw: [`Loss`] says whether it is exact, a lower bound (a
//! CPU without a baseline may have lost messages unseen), or unknown (the kernel-side filter hides the numbering
//! and the drop counter could not be read).

/// How many proc messages were lost, and how sure that count is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Exactly this many.
    Exact(u64),
    /// At least this many: when they were lost, some online CPU had no baseline yet (it had sent nothing this
    /// socket saw), so messages from it may have been lost without a gap to show for it.
    AtLeast(u64),
    /// Messages were lost; how many cannot be known (a kernel-filtered socket whose drop counter is unavailable).
    Unknown,
}

impl Loss {
    /// The count, exact or a lower bound; `None` when unknown.
    pub fn count(self) -> Option<u64> {
        match self {
            Loss::Exact(n) | Loss::AtLeast(n) => Some(n),
            Loss::Unknown => None,
        }
    }

    /// True for [`Loss::Exact`].
    pub fn is_exact(self) -> bool {
        matches!(self, Loss::Exact(_))
    }
}

/// The most CPUs tracked; messages claiming a higher CPU number are not accounted.
pub const MAX_CPUS: usize = 8192;

/// What one `(cpu, seq)` says about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqObservation {
    /// The first message seen from this CPU: it sets the baseline.
    First,
    /// The next number after the previous one.
    InOrder,
    /// `lost` messages are missing before this one.
    Gap {
        /// How many numbers were skipped.
        lost: u32,
    },
    /// A number at or before the previous one (a duplicate or a counter reset); not counted, baseline moves.
    Backwards,
    /// A CPU number beyond [`MAX_CPUS`]; ignored.
    Untracked,
}

/// Tracks the last sequence number seen per CPU.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    last: Vec<Option<u32>>,
    lost: u64,
}

impl SeqTracker {
    /// A tracker with no baselines.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records message `seq` from `cpu`.
    pub fn observe(&mut self, cpu: u32, seq: u32) -> SeqObservation {
        let cpu = cpu as usize;
        if cpu >= MAX_CPUS {
            return SeqObservation::Untracked;
        }
        if self.last.len() <= cpu {
            self.last.resize(cpu + 1, None);
        }
        let prev = self.last[cpu].replace(seq);
        match prev {
            None => SeqObservation::First,
            Some(p) => match seq.wrapping_sub(p) {
                1 => SeqObservation::InOrder,
                d if d == 0 || d > u32::MAX / 2 => SeqObservation::Backwards,
                d => {
                    self.lost += u64::from(d - 1);
                    SeqObservation::Gap { lost: d - 1 }
                }
            },
        }
    }

    /// Messages lost so far, summed over all CPUs.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Whether a message from `cpu` has been seen, so that a gap on it would show.
    pub fn has_baseline(&self, cpu: u32) -> bool {
        self.last.get(cpu as usize).is_some_and(|l| l.is_some())
    }

    /// Forgets every baseline (after a resubscription, say).
    pub fn reset(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gaps_per_cpu() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(0, 10), SeqObservation::First);
        assert_eq!(t.observe(1, 500), SeqObservation::First);
        assert_eq!(t.observe(0, 11), SeqObservation::InOrder);
        assert_eq!(t.observe(1, 505), SeqObservation::Gap { lost: 4 });
        assert_eq!(t.observe(0, 12), SeqObservation::InOrder);
        assert_eq!(t.lost(), 4);
    }

    #[test]
    fn wraps_and_ignores_backwards() {
        let mut t = SeqTracker::new();
        t.observe(3, u32::MAX - 1);
        assert_eq!(t.observe(3, u32::MAX), SeqObservation::InOrder);
        assert_eq!(t.observe(3, 1), SeqObservation::Gap { lost: 1 });
        assert_eq!(t.observe(3, 1), SeqObservation::Backwards);
        assert_eq!(t.observe(3, 0), SeqObservation::Backwards);
        assert_eq!(t.observe(3, 1), SeqObservation::InOrder);
        assert_eq!(t.lost(), 1);
        assert_eq!(t.observe(MAX_CPUS as u32, 1), SeqObservation::Untracked);
        assert!(t.has_baseline(3));
        assert!(!t.has_baseline(2));
        assert!(!t.has_baseline(MAX_CPUS as u32));
    }
}
