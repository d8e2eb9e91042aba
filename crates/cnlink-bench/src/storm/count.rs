//! Matching what a listener printed against the children the storm created.
//!
//! Pids are reused within a storm (pid_max is 32768 here), so created and seen ids are counted as
//! multisets: for each id, `min(created, seen)` events are matched, and the sum over ids is the
//! number of matched events. An extra event for a reused id can therefore never hide a missing one
//! for another id. Events that provably belong to another process (fork or exit events whose tgid
//! and parent tgid are printed and are neither the storm's) are not counted as seen; forkstat
//! prints neither, so for forkstat every fork/exit line counts.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::parse::{parse, Format, Line};

/// A multiset of task ids.
pub(crate) type Ids = HashMap<i32, u32>;

/// Builds the multiset of `ids`.
pub(crate) fn multiset(ids: &[i32]) -> Ids {
    let mut m = Ids::with_capacity(ids.len().min(1 << 16));
    for &id in ids {
        *m.entry(id).or_default() += 1;
    }
    m
}

/// How many events of `seen` match the `created` multiset.
pub(crate) fn matched(created: &Ids, seen: &Ids) -> u64 {
    created.iter().map(|(id, &n)| u64::from(n.min(seen.get(id).copied().unwrap_or(0)))).sum()
}

/// What a listener printed, summed over its output.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Event lines (every event, of any kind and from any process).
    pub(crate) events: u64,
    /// Fork events per child id, for events that may be the storm's.
    pub(crate) forks: Ids,
    /// Exit events per task id, for events that may be the storm's.
    pub(crate) exits: Ids,
    /// Sum of the listener's own "lost N" reports.
    pub(crate) lost_reported: u64,
    /// Number of overrun (ENOBUFS) reports.
    pub(crate) overruns: u64,
}

impl Tally {
    /// Adds one parsed line; `storm` is the storm's process id (the tgid of its threads and the
    /// parent of its forked children).
    pub(crate) fn add(&mut self, line: Line, storm: i32) {
        if line.is_event() {
            self.events += 1;
        }
        let ours = |t: Option<i32>| t.is_none_or(|t| t == storm || t == 0);
        match line {
            Line::Fork { child, tgid, parent_tgid } if tgid == Some(storm) || ours(parent_tgid) => {
                *self.forks.entry(child).or_default() += 1;
            }
            Line::Exit { pid, tgid, parent_tgid } if tgid == Some(storm) || ours(parent_tgid) => {
                *self.exits.entry(pid).or_default() += 1;
            }
            Line::Lost(n) => self.lost_reported += n,
            Line::Overrun => self.overruns += 1,
            _ => {}
        }
    }

    /// Removes the events of the readiness marker children (they are not part of the storm).
    pub(crate) fn forget(&mut self, markers: &[i32]) {
        for id in markers {
            for m in [&mut self.forks, &mut self.exits] {
                if let Some(n) = m.get_mut(id) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// Reads and tallies a listener's whole output file.
    pub(crate) fn read(path: &Path, format: Format, storm: i32) -> io::Result<Tally> {
        let mut tally = Tally::default();
        let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
        let mut buf = Vec::with_capacity(512);
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf);
            tally.add(parse(format, line.trim_end()), storm);
        }
        Ok(tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_ids_are_counted_as_a_multiset() {
        let created = multiset(&[5, 5, 5, 7]);
        // id 5 seen twice (one lost), id 7 seen twice (one extra): the extra 7 must not hide the
        // missing 5.
        let seen = multiset(&[5, 5, 7, 7]);
        assert_eq!(matched(&created, &seen), 3);
    }

    #[test]
    fn foreign_events_are_not_counted() {
        let mut t = Tally::default();
        let storm = 100;
        t.add(Line::Fork { child: 5, tgid: Some(5), parent_tgid: Some(100) }, storm);
        t.add(Line::Fork { child: 8, tgid: Some(100), parent_tgid: Some(1) }, storm);
        t.add(Line::Fork { child: 6, tgid: Some(6), parent_tgid: Some(42) }, storm);
        t.add(Line::Exit { pid: 5, tgid: Some(5), parent_tgid: Some(100) }, storm);
        t.add(Line::Exit { pid: 8, tgid: Some(100), parent_tgid: Some(1) }, storm);
        t.add(Line::Exit { pid: 6, tgid: Some(6), parent_tgid: Some(42) }, storm);
        t.add(Line::Fork { child: 9, tgid: None, parent_tgid: None }, storm);
        t.add(Line::Lost(4), storm);
        assert_eq!(t.events, 7);
        assert_eq!(t.forks, multiset(&[5, 8, 9]));
        assert_eq!(t.exits, multiset(&[5, 8]));
        assert_eq!(t.lost_reported, 4);
        t.forget(&[5]);
        assert_eq!(matched(&multiset(&[5, 9]), &t.forks), 1);
    }
}
