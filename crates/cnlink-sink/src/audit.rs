//! The auditor: from every collected record's (host, boot, sink_seq) and every ledger record, proves per
//! (host, boot) that nothing was lost unaccounted, or says exactly how much was (no IO).
//!
//! Rules, per (host, boot):
//! - the expected sink sequence numbers are `first_seq..=last`, where `first_seq` comes from the ledger and
//!   `last` is the larger of the newest ledger's `last_seq` and the highest number seen;
//! - `missing` is the count of expected numbers never seen (exact, with the first ranges listed);
//!   `duplicates` counts numbers seen more than once (the server's dedup window was exceeded);
//! - the spool stage accounts for at least `spool_evicted + spool_torn` missing numbers (newest ledger), and
//!   at most that plus `spool_evicted_unconfirmed` (records evicted after a publish whose ack never came: the
//!   stream may hold them); the report's `lost.spool_evicted` is the exact number of evicted records missing;
//! - what is missing beyond the most the spool explains is lost in **transit** (published, or to be
//!   published, but not in the stream): unaccounted;
//! - fewer missing numbers than the certain spool losses, numbers below `first_seq`, or a boot without any
//!   ledger record are disagreements: unaccounted too;
//! - kernel, queue and write (full disk) losses have no sequence numbers: they are reported, counted exactly by
//!   the ledger, and accounted for.
//!
//! [`AuditReport::is_complete`] is the exit status: true when nothing is unaccounted for.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::ledger::LedgerRecord;

/// The most missing ranges listed per boot (the count is always exact).
pub const MAX_LISTED_RANGES: usize = 32;

/// Sets of sequence numbers kept as disjoint ranges (events mostly arrive in order, so this stays small).
#[derive(Debug, Clone, Default)]
struct RangeSet {
    /// start -> end (inclusive), disjoint and not adjacent.
    ranges: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Adds `n`; false if it was there already.
    fn insert(&mut self, n: u64) -> bool {
        let before = self.ranges.range(..=n).next_back().map(|(&s, &e)| (s, e));
        if let Some((_, end)) = before {
            if n <= end {
                return false;
            }
        }
        let joins_before = before.filter(|&(_, end)| end + 1 == n);
        let after = n.checked_add(1).and_then(|next| self.ranges.get(&next).map(|&e| (next, e)));
        match (joins_before, after) {
            (Some((start, _)), Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(start, end);
            }
            (Some((start, _)), None) => {
                self.ranges.insert(start, n);
            }
            (None, Some((next, end))) => {
                self.ranges.remove(&next);
                self.ranges.insert(n, end);
            }
            (None, None) => {
                self.ranges.insert(n, n);
            }
        }
        true
    }

    fn min(&self) -> Option<u64> {
        self.ranges.keys().next().copied()
    }

    fn max(&self) -> Option<u64> {
        self.ranges.values().next_back().copied()
    }

    /// Numbers below `n`.
    fn count_below(&self, n: u64) -> u64 {
        self.ranges.range(..n).map(|(&s, &e)| e.min(n - 1) - s + 1).sum()
    }

    /// The gaps inside `from..=to`: their total and the first `limit` of them.
    fn gaps(&self, from: u64, to: u64, limit: usize) -> (u64, Vec<(u64, u64)>) {
        let mut total = 0;
        let mut listed = Vec::new();
        let mut next = from;
        for (&start, &end) in self.ranges.range(..=to) {
            if end < next {
                continue;
            }
            if start > next {
                total += start - next;
                if listed.len() < limit {
                    listed.push((next, start - 1));
                }
            }
            next = end + 1;
        }
        if next <= to {
            total += to - next + 1;
            if listed.len() < limit {
                listed.push((next, to));
            }
        }
        (total, listed)
    }
}

#[derive(Debug, Clone, Default)]
struct BootState {
    seen: RangeSet,
    events: u64,
    ledgers: u64,
    duplicates: u64,
    newest_ledger: Option<LedgerRecord>,
    first_seq: Option<u64>,
}

/// Losses by stage for one (host, boot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageLosses {
    /// Lost in the kernel (the ledger's per-CPU gaps).
    pub kernel: u64,
    /// Lost in the monitor's queue.
    pub queue: u64,
    /// Evicted from the full spool and missing from the stream (exact).
    pub spool_evicted: u64,
    /// Torn or damaged spool records.
    pub spool_torn: u64,
    /// Dropped because the spool could not be written (full disk).
    pub write_dropped: u64,
    /// Missing from the stream without a spool loss to explain it.
    pub transit: u64,
}

/// The audit of one (host, boot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootReport {
    /// The host.
    pub host_id: String,
    /// The boot.
    pub boot_id: String,
    /// Event records seen (distinct).
    pub events: u64,
    /// Ledger records seen (distinct).
    pub ledgers: u64,
    /// Records seen more than once.
    pub duplicates: u64,
    /// The first expected sink sequence number (0 when unknown).
    pub first_seq: u64,
    /// The last expected sink sequence number.
    pub last_seq: u64,
    /// Expected numbers never seen (exact).
    pub missing: u64,
    /// The first missing ranges (inclusive), at most [`MAX_LISTED_RANGES`].
    pub missing_ranges: Vec<(u64, u64)>,
    /// Losses by stage.
    pub lost: StageLosses,
    /// Events the filter left out (from the ledger; not a loss).
    pub filtered: u64,
    /// Losses nobody accounts for (transit and disagreements).
    pub unaccounted: u64,
    /// Why something is unaccounted for, in words.
    pub problems: Vec<String>,
    /// True when the newest ledger record seen is the one written at exit.
    pub saw_final_ledger: bool,
}

/// The audit of every (host, boot) seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// One entry per (host, boot), sorted.
    pub boots: Vec<BootReport>,
    /// Messages that were neither a valid event nor a valid ledger record (counted by the collector).
    pub malformed: u64,
}

impl AuditReport {
    /// True when nothing is unaccounted for (the exit status: 0 when true).
    pub fn is_complete(&self) -> bool {
        self.boots.iter().all(|b| b.unaccounted == 0 && b.problems.is_empty())
    }
}

/// Feeds on collected records; [`report`](Auditor::report) gives the verdict.
#[derive(Debug, Default)]
pub struct Auditor {
    boots: HashMap<(String, String), BootState>,
    malformed: u64,
}

impl Auditor {
    /// An auditor that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// One event record.
    pub fn event(&mut self, host_id: &str, boot_id: &str, sink_seq: u64) {
        let boot = self.boot(host_id, boot_id);
        if boot.seen.insert(sink_seq) {
            boot.events += 1;
        } else {
            boot.duplicates += 1;
        }
    }

    /// One ledger record (it has a sink sequence number of its own).
    pub fn ledger(&mut self, ledger: &LedgerRecord) {
        let boot = self.boot(&ledger.host_id, &ledger.boot_id);
        if !boot.seen.insert(ledger.sink_seq) {
            boot.duplicates += 1;
            return;
        }
        boot.ledgers += 1;
        boot.first_seq = Some(boot.first_seq.map_or(ledger.first_seq, |f| f.min(ledger.first_seq)));
        if boot.newest_ledger.as_ref().is_none_or(|newest| ledger.sink_seq > newest.sink_seq) {
            boot.newest_ledger = Some(ledger.clone());
        }
    }

    /// One message that was neither (the collector counts these too).
    pub fn malformed(&mut self) {
        self.malformed += 1;
    }

    fn boot(&mut self, host_id: &str, boot_id: &str) -> &mut BootState {
        self.boots.entry((host_id.to_owned(), boot_id.to_owned())).or_default()
    }

    /// The verdict on everything fed so far.
    pub fn report(&self) -> AuditReport {
        let mut keys: Vec<_> = self.boots.keys().collect();
        keys.sort();
        let boots = keys.into_iter().map(|key| audit_boot(&key.0, &key.1, &self.boots[key])).collect();
        AuditReport { boots, malformed: self.malformed }
    }
}

fn audit_boot(host_id: &str, boot_id: &str, boot: &BootState) -> BootReport {
    let mut report = BootReport {
        host_id: host_id.to_owned(),
        boot_id: boot_id.to_owned(),
        events: boot.events,
        ledgers: boot.ledgers,
        duplicates: boot.duplicates,
        ..Default::default()
    };
    let seen_max = boot.seen.max().unwrap_or(0);
    let Some(ledger) = &boot.newest_ledger else {
        // Without a ledger the start is unknown: check what lies between the numbers seen.
        let first = boot.seen.min().unwrap_or(0);
        let (missing, ranges) = boot.seen.gaps(first, seen_max, MAX_LISTED_RANGES);
        report.first_seq = first;
        report.last_seq = seen_max;
        report.missing = missing;
        report.missing_ranges = ranges;
        report.lost.transit = missing;
        report.unaccounted = missing;
        report.problems.push("no ledger record: losses cannot be accounted for".into());
        return report;
    };
    let first = boot.first_seq.unwrap_or(ledger.first_seq);
    let last = ledger.last_seq.max(seen_max);
    let (missing, ranges) = boot.seen.gaps(first, last, MAX_LISTED_RANGES);
    report.first_seq = first;
    report.last_seq = last;
    report.missing = missing;
    report.missing_ranges = ranges;
    report.saw_final_ledger = ledger.is_final;
    report.filtered = ledger.filtered;
    report.lost = StageLosses {
        kernel: ledger.kernel_lost,
        queue: ledger.queue_lost,
        spool_evicted: ledger.spool_evicted,
        spool_torn: ledger.spool_torn,
        write_dropped: ledger.write_dropped,
        transit: 0,
    };
    let certain = ledger.spool_losses_certain();
    let possible = ledger.spool_losses_possible();
    if missing < certain {
        report.unaccounted += certain - missing;
        report
            .problems
            .push(format!("the ledger reports {certain} spool losses but only {missing} sequence numbers are missing"));
    } else if missing > possible {
        report.lost.transit = missing - possible;
        report.unaccounted += missing - possible;
        report.problems.push(format!(
            "{missing} sequence numbers missing from the stream, at most {possible} of them explained by the spool"
        ));
    }
    // The evictions that are missing: exact, since torn records are always missing.
    report.lost.spool_evicted = missing.min(possible) - report.lost.spool_torn.min(missing.min(possible));
    let below = boot.seen.count_below(first);
    if below > 0 {
        report.unaccounted += below;
        report.problems.push(format!("{below} records numbered below the boot's first_seq {first}"));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(seq: u64, first: u64, evicted: u64, torn: u64) -> LedgerRecord {
        LedgerRecord {
            host_id: "h".into(),
            boot_id: "b".into(),
            sink_seq: seq,
            kind: "ledger".into(),
            first_seq: first,
            last_seq: seq,
            spool_evicted: evicted,
            spool_torn: torn,
            kernel_lost: 2,
            is_final: true,
            ..Default::default()
        }
    }

    #[test]
    fn range_set_merges_and_counts_gaps() {
        let mut set = RangeSet::default();
        for n in [5, 3, 4, 9, 10, 1] {
            assert!(set.insert(n));
        }
        assert!(!set.insert(4));
        assert_eq!(set.ranges.len(), 3); // 1, 3..=5, 9..=10
        assert_eq!(set.gaps(1, 12, 10), (6, vec![(2, 2), (6, 8), (11, 12)]));
        assert_eq!(set.gaps(1, 12, 1), (6, vec![(2, 2)]));
        assert_eq!(set.count_below(4), 2);
        assert!(set.insert(2));
        assert_eq!(set.ranges.len(), 2);
    }

    #[test]
    fn a_complete_boot_is_complete_and_kernel_losses_are_accounted() {
        let mut auditor = Auditor::new();
        for seq in 1..100 {
            auditor.event("h", "b", seq);
        }
        auditor.ledger(&ledger(100, 1, 0, 0));
        let report = auditor.report();
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.boots[0].events, 99);
        assert_eq!(report.boots[0].lost.kernel, 2);
        assert_eq!(report.boots[0].missing, 0);
    }

    #[test]
    fn spool_losses_explain_exactly_that_many_missing_numbers() {
        let mut auditor = Auditor::new();
        for seq in (1..100).filter(|s| !(10..20).contains(s)) {
            auditor.event("h", "b", seq);
        }
        auditor.event("h", "b", 50); // a duplicate
        auditor.ledger(&ledger(100, 1, 9, 1));
        let report = auditor.report();
        assert!(report.is_complete(), "{report:?}");
        let boot = &report.boots[0];
        assert_eq!((boot.missing, boot.duplicates), (10, 1));
        assert_eq!(boot.missing_ranges, vec![(10, 19)]);
        assert_eq!((boot.lost.spool_evicted, boot.lost.spool_torn, boot.lost.transit), (9, 1, 0));
    }

    #[test]
    fn evictions_after_an_unconfirmed_publish_may_or_may_not_be_missing() {
        let mut with_unconfirmed = ledger(100, 1, 5, 0);
        with_unconfirmed.spool_evicted_unconfirmed = 3;
        for kept in [0, 1, 3] {
            // 5 never sent and missing; of the 3 sent without an ack, `kept` reached the stream.
            let mut auditor = Auditor::new();
            for seq in (1..100).filter(|s| !(10..15).contains(s) && !(20..23 - kept).contains(s)) {
                auditor.event("h", "b", seq);
            }
            auditor.ledger(&with_unconfirmed);
            let report = auditor.report();
            assert!(report.is_complete(), "{report:?}");
            assert_eq!(report.boots[0].lost.spool_evicted, 8 - kept);
        }
        let mut auditor = Auditor::new();
        for seq in (1..100).filter(|s| !(10..19).contains(s)) {
            auditor.event("h", "b", seq);
        }
        auditor.ledger(&with_unconfirmed);
        assert_eq!(auditor.report().boots[0].lost.transit, 1);
    }

    #[test]
    fn a_number_lost_in_transit_is_unaccounted() {
        let mut auditor = Auditor::new();
        for seq in (1..100).filter(|&s| s != 42) {
            auditor.event("h", "b", seq);
        }
        auditor.ledger(&ledger(100, 1, 0, 0));
        let report = auditor.report();
        assert!(!report.is_complete());
        assert_eq!(report.boots[0].lost.transit, 1);
        assert_eq!(report.boots[0].missing_ranges, vec![(42, 42)]);
    }

    #[test]
    fn over_counted_spool_losses_and_missing_ledgers_are_problems() {
        let mut auditor = Auditor::new();
        for seq in 1..100 {
            auditor.event("h", "b", seq);
        }
        auditor.ledger(&ledger(100, 1, 5, 0));
        auditor.event("h", "other", 7);
        let report = auditor.report();
        assert!(!report.is_complete());
        assert_eq!(report.boots[0].unaccounted, 5);
        assert_eq!(report.boots[1].problems.len(), 1);
    }

    #[test]
    fn the_newest_ledger_and_the_lowest_first_seq_count() {
        let mut auditor = Auditor::new();
        for seq in 11..30 {
            auditor.event("h", "b", seq);
        }
        auditor.ledger(&ledger(30, 11, 0, 0));
        auditor.ledger(&ledger(20, 11, 0, 0)); // a repeat of an earlier number: a duplicate
        let report = auditor.report();
        assert!(report.is_complete(), "{report:?}");
        assert_eq!((report.boots[0].first_seq, report.boots[0].last_seq), (11, 30));
        assert_eq!(report.boots[0].duplicates, 1);
    }
}
