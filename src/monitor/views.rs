//! What runs on the process table (`cnlink-procmon`): ECS output (`--format ecs`), the tree view (`--tree`) and
//! the tree filters (`--descendants-of`, `--exclude-descendants-of`, `--container`, `--unit`).
//!
//! They keep a [`ProcessTable`] of their own, seeded from `/proc` after subscribing and fed with every event the
//! monitor receives (its own excepted), shown or not; the monitor asks them, for each event it would show,
//! whether it passes and, when they write the output, to write it.

use anyhow::Context;
use cnlink::proc::{Event, Loss};
use cnlink_procmon::ecs::EcsWriter;
use cnlink_procmon::{HostIdentity, LiveProc, ProcRecord, ProcSource, ProcessTable, TableConfig, TreeFilter, Wants};

use super::human::{Columns, NameStyle};
use super::json::LostCause;
use super::tree::TreeView;

/// What `cnlink proc` asked of the table's views.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewConfig {
    /// `--format ecs`.
    pub(crate) ecs: bool,
    /// `--tree`.
    pub(crate) tree: bool,
    /// The tree filters.
    pub(crate) filter: TreeFilter,
}

impl ViewConfig {
    /// Whether any view needs the table.
    pub(crate) fn active(&self) -> bool {
        self.ecs || self.tree || self.filter.is_active()
    }
}

/// The table and the views over it.
#[derive(Debug)]
pub(crate) struct Views {
    table: ProcessTable,
    proc: LiveProc,
    filter: TreeFilter,
    ecs: Option<EcsWriter>,
    tree: Option<TreeView>,
    /// The record of the event being handled.
    rec: Option<ProcRecord>,
}

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` now, in ns: what turns a kernel timestamp into `@timestamp`.
fn realtime_offset_ns() -> i128 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    ns(clock_gettime(ClockId::Realtime)) - ns(clock_gettime(ClockId::Monotonic))
}

impl Views {
    /// Seeds the table from `/proc` (call after subscribing, so that no process falls between the two) and
    /// resolves the filters' pids. With `enrich` off, only `/proc/PID/stat` is read (the tree needs parents).
    pub(crate) fn start(cfg: ViewConfig, enrich: bool, style: NameStyle, cols: Columns) -> anyhow::Result<Views> {
        let host = HostIdentity::read().context("reading the host identity")?;
        let wants = if enrich { Wants::ALL } else { Wants::STAT };
        let mut proc = LiveProc::default();
        let mut table = ProcessTable::new(host.clone(), TableConfig { wants, ..TableConfig::default() });
        table.seed(&proc.snapshot(wants));
        let mut filter = cfg.filter;
        filter.start(&table).context("--descendants-of / --exclude-descendants-of")?;
        let ecs = cfg.ecs.then(|| {
            let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
            EcsWriter::new(&host).host_name(&name)
        });
        let tree = cfg.tree.then(|| TreeView::new(style, cols));
        let mut v = Views { table, proc, filter, ecs, tree, rec: None };
        v.resync_clock();
        Ok(v)
    }

    /// The header line, for the tree view.
    pub(crate) fn header(&self, out: &mut Vec<u8>) -> bool {
        self.tree.as_ref().map(|t| t.header(out)).is_some()
    }

    /// Brings the clock offsets up to date (once per batch).
    pub(crate) fn resync_clock(&mut self) {
        if let Some(t) = &mut self.tree {
            t.resync_clock();
        }
        if let Some(e) = &mut self.ecs {
            e.set_realtime_offset(realtime_offset_ns());
        }
    }

    /// Every event, before the monitor decides on it: the table and the tree filter follow it.
    pub(crate) fn follow(&mut self, ev: &Event) {
        let rec = self.table.handle(&ev.into(), &mut self.proc);
        self.filter.follow(&self.table, &rec);
        self.rec = Some(rec);
    }

    /// Whether the event being handled passes the tree filters.
    pub(crate) fn admits(&self) -> bool {
        self.rec.as_ref().is_some_and(|r| self.filter.matches(r))
    }

    /// Writes the event being handled, when a view writes the output (false: the monitor writes it).
    pub(crate) fn write(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(rec) = &self.rec else { return false };
        if let Some(e) = &mut self.ecs {
            e.record(rec);
            out.extend_from_slice(e.bytes());
            e.clear();
            return true;
        }
        if let Some(t) = &mut self.tree {
            t.event(out, rec, Some(&self.table));
            return true;
        }
        false
    }

    /// Every event, after the decision: what it ended is forgotten in time.
    pub(crate) fn done(&mut self) {
        if let Some(rec) = self.rec.take() {
            self.filter.forget(&rec);
            if let Some(t) = &mut self.tree {
                t.forget(&rec);
            }
        }
    }

    /// Events were lost: the table checks its entries again.
    pub(crate) fn note_loss(&mut self) {
        self.table.note_loss();
    }

    /// Writes a loss, when a view writes the output (false: the monitor writes it).
    pub(crate) fn lost(&mut self, out: &mut Vec<u8>, loss: Loss, cause: LostCause, now_ns: u64) -> bool {
        if let Some(e) = &mut self.ecs {
            e.loss(now_ns, loss, cause.name());
            out.extend_from_slice(e.bytes());
            e.clear();
            return true;
        }
        if let Some(t) = &self.tree {
            t.lost(out, loss, cause, now_ns);
            return true;
        }
        false
    }
}
