//! Which processes to show: the [`RecordFilter`] trait, run by the monitor for every record, and the
//! filters `cnlink proc` has always had ([`ProcFilter`]: pid with descendants, name, uid, process group).
//!
//! A filter sees every record the table produces, in order, whether its kind is shown or not
//! ([`RecordFilter::before`], [`RecordFilter::after`]), so that it can follow the process tree; it decides
//! only on records of the kinds shown ([`RecordFilter::matches`]). A record is shown when every filter in the
//! monitor's list passes it. Filters read the table, and `/proc` only through the [`FilterContext`]'s
//! source, so that a recording can answer for them.

mod glob;
mod process;

use std::fmt;

use cnlink::wire::EventMask;

use crate::procfs::ProcSource;
use crate::table::record::ProcRecord;
use crate::table::ProcessTable;

pub use glob::Glob;
pub use process::ProcFilter;

/// What a filter may consult besides the record.
pub struct FilterContext<'a> {
    /// The process table, after the record's event.
    pub table: &'a ProcessTable,
    /// Where `/proc` reads go (live, or a recording).
    pub source: &'a mut dyn ProcSource,
}

impl fmt::Debug for FilterContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterContext").finish_non_exhaustive()
    }
}

/// A filter over the monitor's records.
pub trait RecordFilter: Send + fmt::Debug {
    /// Called once, after the table has been seeded from the start-up snapshot.
    fn start(&mut self, _table: &ProcessTable) {}

    /// The events this filter must receive to keep its state, beyond those shown (fork and exit to follow
    /// descendants, say).
    fn needs(&self) -> EventMask {
        EventMask::NONE
    }

    /// Every record, in order, before any filter decides on it: follow what the event creates.
    fn before(&mut self, _rec: &ProcRecord, _cx: &mut FilterContext<'_>) {}

    /// Whether a record of a shown kind passes.
    fn matches(&mut self, rec: &ProcRecord, cx: &mut FilterContext<'_>) -> bool;

    /// Every record, in order, after the decision: forget what the event ends.
    fn after(&mut self, _rec: &ProcRecord, _cx: &mut FilterContext<'_>) {}
}

/// The filters a monitor runs, all of which must pass.
#[derive(Debug, Default)]
pub struct FilterList(Vec<Box<dyn RecordFilter>>);

impl FilterList {
    /// No filter: everything passes.
    pub fn new() -> FilterList {
        FilterList(Vec::new())
    }

    /// Adds a filter.
    pub fn push(&mut self, f: impl RecordFilter + 'static) {
        self.0.push(Box::new(f));
    }

    /// Adds a boxed filter.
    pub fn push_boxed(&mut self, f: Box<dyn RecordFilter>) {
        self.0.push(f);
    }

    /// True when there is no filter.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the filters need from the kernel.
    pub fn needs(&self) -> EventMask {
        self.0.iter().fold(EventMask::NONE, |m, f| m | f.needs())
    }

    /// Starts every filter.
    pub fn start(&mut self, table: &ProcessTable) {
        for f in &mut self.0 {
            f.start(table);
        }
    }

    /// Runs every filter on one record; `shown` says whether its kind is selected. Returns whether it passes
    /// (false for kinds not shown).
    pub fn run(&mut self, rec: &ProcRecord, shown: bool, cx: &mut FilterContext<'_>) -> bool {
        if self.0.is_empty() {
            return shown;
        }
        for f in &mut self.0 {
            f.before(rec, cx);
        }
        let pass = shown && self.0.iter_mut().all(|f| f.matches(rec, cx));
        for f in &mut self.0 {
            f.after(rec, cx);
        }
        pass
    }
}
