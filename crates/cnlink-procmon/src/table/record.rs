//! What goes into the table ([`KernelEvent`]) and what comes out ([`ProcRecord`]).

use std::sync::Arc;

use cnlink::wire::EventData;

use super::process::{EntryLeader, ProcessInfo};
use crate::identity::{EntityId, EntityIdSource};
use crate::procfs::EnrichStatus;

/// One proc connector event, as plain values: the table needs no subscription, only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelEvent {
    /// `cn_msg.seq`: the sending CPU's message counter.
    pub seq: u32,
    /// The CPU that sent it.
    pub cpu: u32,
    /// `CLOCK_MONOTONIC` time of the event, in ns.
    pub timestamp_ns: u64,
    /// What happened.
    pub data: EventData,
}

impl From<cnlink::proc::Event> for KernelEvent {
    fn from(e: cnlink::proc::Event) -> Self {
        KernelEvent { seq: e.seq, cpu: e.cpu, timestamp_ns: e.timestamp_ns, data: e.data }
    }
}

impl From<&cnlink::proc::Event> for KernelEvent {
    fn from(e: &cnlink::proc::Event) -> Self {
        KernelEvent::from(*e)
    }
}

/// An event with everything the table knows about its process.
///
/// Cheap to clone: the process data are shared (`Arc`), only `ancestors` is a small vector of pointers.
#[derive(Debug, Clone)]
pub struct ProcRecord {
    /// The event.
    pub event: KernelEvent,
    /// The thread the event is about, when it is not the process's leader (thread forks and exits, renames
    /// of a thread).
    pub tid: Option<i32>,
    /// The process's entity id (the child's, for a fork); `None` only for events about no process (acks,
    /// unknown kinds).
    pub entity_id: Option<EntityId>,
    /// How `entity_id` was derived.
    pub entity_id_source: Option<EntityIdSource>,
    /// The parent's entity id, when the parent is known.
    pub parent_entity_id: Option<EntityId>,
    /// How trustworthy the process data are.
    pub status: EnrichStatus,
    /// The process, after the event (for an exit: as it was when it exited).
    pub process: Option<Arc<ProcessInfo>>,
    /// The parent.
    pub parent: Option<Arc<ProcessInfo>>,
    /// The process before the event, for events that change it (exec, comm, uid, gid, sid).
    pub previous: Option<Arc<ProcessInfo>>,
    /// For exec and exit: the ancestors, parent first, up to init or the configured depth.
    pub ancestors: Vec<Arc<ProcessInfo>>,
    /// For exit: how long the task (the thread, for a thread's exit) lived, when its start is known.
    pub lifetime_ns: Option<u64>,
}

impl ProcRecord {
    pub(crate) fn bare(event: KernelEvent) -> ProcRecord {
        ProcRecord {
            event,
            tid: None,
            entity_id: None,
            entity_id_source: None,
            parent_entity_id: None,
            status: EnrichStatus::Gone,
            process: None,
            parent: None,
            previous: None,
            ancestors: Vec::new(),
            lifetime_ns: None,
        }
    }

    /// Fills the ids and status from `process` and `parent`.
    pub(crate) fn with(mut self, process: Option<Arc<ProcessInfo>>, parent: Option<Arc<ProcessInfo>>) -> Self {
        if let Some(p) = &process {
            self.entity_id = Some(p.entity_id);
            self.entity_id_source = Some(p.entity_id_source);
            self.parent_entity_id = p.parent_entity_id;
            self.status = p.status;
        }
        self.process = process;
        self.parent = parent;
        self
    }

    /// The entry leader of the process (set for every process the table knows; exec records carry the one
    /// chosen for the new program).
    pub fn entry_leader(&self) -> Option<&EntryLeader> {
        self.process.as_ref()?.entry_leader.as_deref()
    }
}
