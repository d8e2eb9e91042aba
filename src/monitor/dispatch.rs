//! The glue between the monitor and the outputs: each item goes to the `-S` name table and to every output.

use std::io;

use cnlink_procmon::{EventKind, MonitorItem};

use super::output::Outputs;
use super::stats::Names;

/// The main thread's state beyond the monitor.
pub(crate) struct Dispatch {
    pub(crate) outputs: Outputs,
    /// The `-S` table by name, when it is wanted.
    pub(crate) names: Option<Names>,
}

impl Dispatch {
    /// Handles the items of one batch, then flushes the outputs.
    pub(crate) fn items(&mut self, items: &[MonitorItem]) -> io::Result<()> {
        self.outputs.batch_start();
        for item in items {
            match item {
                MonitorItem::Record(rec) => {
                    if let Some(n) = &mut self.names {
                        n.count(EventKind::of(&rec.event.data), rec.process.as_ref().map(|p| &p.program.name));
                    }
                    self.outputs.record(rec)?;
                }
                // A loss of exactly nothing says nothing.
                MonitorItem::Lost(l) if l.exact && l.count == Some(0) => {}
                MonitorItem::Lost(l) => self.outputs.lost(l)?,
            }
        }
        self.outputs.batch_end()
    }
}
