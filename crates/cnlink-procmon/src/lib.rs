//! The process model behind `cnlink proc`: who each process is, which process started it and why, and where
//! it runs, kept from proc connector events; and the monitor that runs it, with its guarantees: nothing lost
//! silently, and a receive thread that enrichment, output or a slow consumer never slows.
//!
//! - [`monitor`]: [`Monitor`], built by [`Monitor::builder`]: subscribes, seeds the table from `/proc`, and
//!   yields [`MonitorItem`]s (records and losses) from a blocking iterator, [`Monitor::recv`], or (feature
//!   `tokio`) a `Stream`.
//! - [`pipeline`]: the receive thread, its bounded queue, and the `/proc` reads it makes the moment an exec
//!   arrives ([`PrefetchPolicy`]); [`EventSource`] (the kernel, or a recording).
//! - [`select`] and [`filter`]: which events ([`Selection`]) and which processes ([`RecordFilter`],
//!   [`ProcFilter`], [`TreeFilter`]) are shown.
//! - [`loss`]: [`LostEvents`] and the cumulative [`LossCounts`], by cause and by CPU.
//! - [`record`] and [`replay`]: what a recording needs ([`recorder`]), and a monitor fed from one.
//! - [`procfs`]: reading `/proc/PID` into plain, serializable [`Observation`]s, bounded and verified against
//!   the process's start time, behind the [`ProcSource`] trait (live, recorded, or prefetched).
//! - [`identity`]: [`EntityId`], an id that survives pid reuse and is unique across hosts and boots.
//! - [`container`]: recognising containers, Kubernetes pods and systemd units in cgroup paths.
//! - [`table`]: the [`ProcessTable`], a sans-IO engine: events and observations in, [`ProcRecord`]s out,
//!   with parent, children, threads, exec history, ancestors and the entry leader.
//! - [`tree_filter`]: [`TreeFilter`], exact filters over the table (a [`RecordFilter`]): descendants of a
//!   process (or not), a container, a systemd unit.
//! - [`ecs`]: [`ecs::EcsWriter`], Elastic Common Schema documents from records and losses, as JSON Lines.
//! - [`native_json`]: `cnlink proc`'s native JSON (docs/json.md) read back into records and losses.
//! - [`tty`]: terminal names from `tty_nr`, and back.
//!
//! ```no_run
//! use cnlink_procmon::{Monitor, MonitorItem, ProcFilter, Selection};
//!
//! let monitor = Monitor::builder()
//!     .events(Selection::parse("exec")?)
//!     .filter(ProcFilter::new().uids(&[1000]))
//!     .build()?;
//! for item in monitor {
//!     match item? {
//!         MonitorItem::Record(r) => {
//!             if let (Some(id), Some(p)) = (r.entity_id, &r.process) {
//!                 let parents: Vec<_> = r.ancestors.iter().map(|a| a.program.name.to_string()).collect();
//!                 println!("{id} {} <- {}", p.program.name, parents.join(" <- "));
//!             }
//!         }
//!         MonitorItem::Lost(l) => eprintln!("lost {:?} events ({})", l.count, l.cause.name()),
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The table alone, fed by hand:
//!
//! ```no_run
//! use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
//! use cnlink_procmon::{HostIdentity, LiveProc, ProcSource, ProcessTable, TableConfig, Wants};
//!
//! // Subscribe first, then take the snapshot: no process falls between the two.
//! let mut events = ProcEvents::subscribe(ProcOptions::default())?;
//! let mut proc = LiveProc::default();
//! let mut table = ProcessTable::new(HostIdentity::read()?, TableConfig::default());
//! table.seed(&proc.snapshot(Wants::ALL));
//! let mut items = Vec::new();
//! events.recv_items(&mut items, None)?;
//! for item in &items {
//!     match item {
//!         ProcItem::Event(ev) => {
//!             let rec = table.handle(&ev.into(), &mut proc);
//!             if let (Some(id), Some(p)) = (rec.entity_id, &rec.process) {
//!                 println!("{} {id} {}", ev.data.name(), p.program.name);
//!             }
//!         }
//!         ProcItem::Lost { .. } => table.note_loss(),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The rules (entity id derivation, enrichment status, entry leaders, container recognition, bounds) are in
//! `docs/process-model.md`.

#![forbid(unsafe_code)]

mod bstr;
pub mod capture;
pub mod container;
pub mod ecs;
#[cfg(test)]
mod fake;
pub mod filter;
pub mod identity;
mod intern;
pub mod json_text;
pub mod loss;
pub mod monitor;
pub mod native_json;
pub mod pipeline;
pub mod procfs;
pub mod record;
pub mod replay;
pub mod select;
pub mod table;
pub mod tree_filter;
pub mod tty;

pub use bstr::BStr;
pub use container::{CgroupInfo, Container, Pod, QosClass, Runtime, SystemdUnit};
pub use filter::{FilterContext, FilterList, Glob, ProcFilter, RecordFilter, StartError};
pub use identity::{EntityId, EntityIdSource, HostIdentity};
pub use loss::{LossCause, LossCounts, LostEvents};
pub use monitor::{Monitor, MonitorBuilder, MonitorCounters, MonitorError, MonitorItem, TRACKING};
pub use pipeline::{EventSource, PrefetchPolicy};
pub use procfs::{EnrichStatus, LiveProc, NoProc, Observation, Prefetched, ProcSource, Snapshot, Wants};
pub use record::{recorder, ProcAnswer, Recorder, RecorderEvent, RecorderHandle};
pub use replay::{RecordedProc, ReplayEvents, ReplayInput};
pub use select::{EventKind, Selection, SelectionError};
pub use table::process::{EntryLeader, EntryLeaderKind, ProcessInfo, Program};
pub use table::record::{KernelEvent, ProcRecord};
pub use table::{Ancestry, MemoryUsage, ProcessTable, TableConfig, TableStats};
pub use tree_filter::{ProcessRef, TreeFilter};
