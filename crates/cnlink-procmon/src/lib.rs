//! The process model behind `cnlink proc`: who each process is, which process started it and why, and where
//! it runs, kept from proc connector events.
//!
//! - [`procfs`]: reading `/proc/PID` into plain, serializable [`Observation`]s, bounded and verified against
//!   the process's start time, behind the [`ProcSource`] trait (live, recorded, or prefetched).
//! - [`identity`]: [`EntityId`], an id that survives pid reuse and is unique across hosts and boots.
//! - [`container`]: recognising containers, Kubernetes pods and systemd units in cgroup paths.
//! - [`table`]: the [`ProcessTable`], a sans-IO engine: events and observations in, [`ProcRecord`]s out,
//!   with parent, children, threads, exec history, ancestors and the entry leader.
//! - [`tree_filter`]: [`TreeFilter`], exact filters over the table: descendants of a process (or not), a
//!   container, a systemd unit.
//! - [`ecs`]: [`ecs::EcsWriter`], Elastic Common Schema documents from records, as JSON Lines.
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
pub mod container;
pub mod ecs;
pub mod identity;
mod intern;
pub mod procfs;
pub mod table;
pub mod tree_filter;

pub use bstr::{write_escaped, BStr};
pub use container::{CgroupInfo, Container, Pod, QosClass, Runtime, SystemdUnit};
pub use identity::{EntityId, EntityIdSource, HostIdentity};
pub use procfs::{EnrichStatus, LiveProc, Observation, ProcSource, Snapshot, Wants};
pub use table::process::{EntryLeader, EntryLeaderKind, ProcessInfo, Program};
pub use table::record::{KernelEvent, ProcRecord};
pub use table::{Ancestry, MemoryUsage, ProcessTable, TableConfig, TableStats};
pub use tree_filter::{ProcessRef, TreeFilter};
