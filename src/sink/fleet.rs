//! `cnlink collect --format text|ecs` and `--tree`: a fleet's events, read back from their native JSON
//! (`cnlink_procmon::native_json`), through `cnlink proc`'s own writers ([`Human`], [`TreeView`],
//! [`EcsWriter`]), one set per host and boot.
//!
//! - **Time.** Each event carries its host's `CLOCK_REALTIME - CLOCK_MONOTONIC` (`realtime_offset_ns`, added by
//!   `cnlink proc --sink`): ECS `@timestamp` is the UTC the host would have written; the time column is in the
//!   collector's local time zone (at that moment). An event without the key (an older `cnlink`) gets this
//!   machine's offset, which is right only for this machine's own events: said once per host and boot.
//! - **Hosts.** Each host and boot has its writers, its clock, and what was seen of its processes (their last
//!   [`ProcessInfo`] by entity id, bounded): a fork names its parent's program, a tree places processes under
//!   their parents, per host. While one host is in the stream the lines are `cnlink proc`'s; from the second
//!   host on, a header with a `Host` column is written and every line starts with its host id. ECS documents
//!   name their host (`host.id`, `host.boot.id`) and never need a column.
//! - **What is not known** at the collector: user names (`-x` shows uids: this machine's names would be
//!   wrong), the processes' start times and exec history, anything a filtered stream left out.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use chrono::TimeZone;
use cnlink::wire::{Escaped, EventData};
use cnlink_procmon::ecs::EcsWriter;
use cnlink_procmon::native_json::{self, ReadError};
use cnlink_procmon::{EntityId, HostIdentity, MonitorItem, ProcRecord, ProcessInfo};

use crate::monitor::clock::{LocalClock, Reading, SharedClock};
use crate::monitor::human::{Columns, Human, NameStyle, TextEnv};
use crate::monitor::tree::TreeView;

/// What the fleet is shown as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FleetFormat {
    /// `cnlink proc`'s text columns.
    Text,
    /// The tree view.
    Tree,
    /// ECS documents.
    Ecs,
}

/// How the text looks, and this machine's facts the writers need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FleetLook {
    pub(crate) format: FleetFormat,
    pub(crate) style: NameStyle,
    pub(crate) columns: Columns,
    /// The pid column's width.
    pub(crate) pid_width: usize,
    /// This machine's `CLOCK_REALTIME - CLOCK_MONOTONIC`, for events that carry none.
    pub(crate) own_offset_ns: i64,
}

/// Processes remembered across all hosts and boots, per generation (two generations are kept): each host and boot
/// gets an equal share, at least [`KNOWN_PER_HOST_MIN`], so that a fleet of many hosts stays bounded.
const KNOWN: usize = 1 << 16;

/// The least a host and boot's generation may hold.
const KNOWN_PER_HOST_MIN: usize = 64;

/// The writers of every host and boot in the stream.
pub(crate) struct FleetView {
    look: FleetLook,
    hosts: HashMap<(String, String), HostView>,
    /// Host ids seen, in order.
    host_ids: Vec<String>,
    /// The host column's width (0: one host so far, no column).
    host_width: usize,
    lines: Vec<u8>,
    /// What the caller should say on stderr.
    pub(crate) notes: Vec<String>,
}

/// One host and boot.
struct HostView {
    writer: Writer,
    clock: SharedClock,
    /// The (offset, time zone) the clock holds.
    clock_key: Option<(i64, i32)>,
    known: Known,
}

enum Writer {
    Text(Human),
    Tree(TreeView),
    Ecs(Box<EcsWriter>),
}

impl FleetView {
    pub(crate) fn new(look: FleetLook) -> FleetView {
        FleetView {
            look,
            hosts: HashMap::new(),
            host_ids: Vec::new(),
            host_width: 0,
            lines: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The header line of the text and the tree view (`cnlink proc`'s; nothing for ECS).
    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        let human = Human::new(self.look.style, self.look.columns, self.env(fixed_clock(0, 0)));
        match self.look.format {
            FleetFormat::Text => human.header(out),
            FleetFormat::Tree => human.header_named(out, "Process tree"),
            FleetFormat::Ecs => {}
        }
    }

    fn env(&self, clock: SharedClock) -> TextEnv {
        TextEnv { pid_width: self.look.pid_width, clock, user_name: Box::new(|_| None) }
    }

    /// Writes the lines of one published event (its payload, with the host and boot it came from).
    pub(crate) fn event(
        &mut self,
        out: &mut Vec<u8>,
        host_id: &str,
        boot_id: &str,
        payload: &[u8],
    ) -> Result<(), ReadError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)?;
        let offset = object.get("realtime_offset_ns").and_then(serde_json::Value::as_i64);
        let item = native_json::read_object(&object)?;
        self.host(out, host_id);
        let key = (host_id.to_owned(), boot_id.to_owned());
        if !self.hosts.contains_key(&key) {
            let view = self.new_host(host_id, boot_id);
            self.hosts.insert(key.clone(), view);
        }
        let limit = (KNOWN / self.hosts.len()).max(KNOWN_PER_HOST_MIN);
        let Some(view) = self.hosts.get_mut(&key) else { return Ok(()) };
        let offset = offset.unwrap_or_else(|| {
            if view.clock_key.is_none() {
                self.notes.push(format!(
                    "events of host {} boot {} carry no realtime_offset_ns (an older cnlink): their times are \
                     read with this machine's clock",
                    Escaped(host_id.as_bytes()),
                    Escaped(boot_id.as_bytes())
                ));
            }
            self.look.own_offset_ns
        });
        let ts = match &item {
            MonitorItem::Record(r) => r.event.timestamp_ns,
            MonitorItem::Lost(l) => l.timestamp_ns,
        };
        view.set_clock(offset, ts);
        self.lines.clear();
        match item {
            MonitorItem::Record(mut rec) => {
                view.known.fill(&mut rec);
                view.write_record(&mut self.lines, &rec, offset);
                view.known.learn(&rec, limit);
            }
            MonitorItem::Lost(l) => view.write_lost(&mut self.lines, &l, offset),
        }
        self.prefixed(out, host_id);
        Ok(())
    }

    /// Notes a host; the second one turns the host column on (with a header that has it).
    fn host(&mut self, out: &mut Vec<u8>, host_id: &str) {
        if self.host_ids.iter().any(|h| h == host_id) {
            return;
        }
        self.host_ids.push(host_id.to_owned());
        if self.host_ids.len() < 2 || self.look.format == FleetFormat::Ecs {
            return;
        }
        let before = self.host_width;
        self.host_width =
            self.host_ids.iter().map(|h| Escaped(h.as_bytes()).to_string().len()).max().unwrap_or(4).max(4);
        if before == 0 || self.host_width > before {
            let _ = write!(out, "{:<w$} ", "Host", w = self.host_width);
            self.header(out);
        }
    }

    /// The lines written, each after its host when there is a column.
    fn prefixed(&self, out: &mut Vec<u8>, host_id: &str) {
        if self.host_width == 0 {
            out.extend_from_slice(&self.lines);
            return;
        }
        let label = format!("{:<w$} ", Escaped(host_id.as_bytes()).to_string(), w = self.host_width);
        for line in self.lines.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(label.as_bytes());
            out.extend_from_slice(line);
        }
    }

    fn new_host(&self, host_id: &str, boot_id: &str) -> HostView {
        let clock = fixed_clock(self.look.own_offset_ns, 0);
        let (style, cols) = (self.look.style, self.look.columns);
        let writer = match self.look.format {
            FleetFormat::Text => Writer::Text(Human::new(style, cols, self.env(clock.clone()))),
            FleetFormat::Tree => Writer::Tree(TreeView::new(style, cols, self.env(clock.clone()))),
            FleetFormat::Ecs => Writer::Ecs(Box::new(EcsWriter::new(&HostIdentity::new(host_id, boot_id)))),
        };
        HostView { writer, clock, clock_key: None, known: Known::default() }
    }
}

impl HostView {
    /// The clock for an event at `ts` with this offset: UTC plus this machine's time zone offset at that time.
    fn set_clock(&mut self, offset: i64, ts: u64) {
        let utc_ns = i128::from(ts) + i128::from(offset);
        let utc_ns = i64::try_from(utc_ns).unwrap_or(i64::MAX);
        let zone = chrono::Local.timestamp_nanos(utc_ns).offset().local_minus_utc();
        if self.clock_key != Some((offset, zone)) {
            self.clock_key = Some((offset, zone));
            *self.clock.borrow_mut() = LocalClock::starting(reading(offset, zone));
        }
    }

    fn write_record(&mut self, out: &mut Vec<u8>, rec: &ProcRecord, offset: i64) {
        match &mut self.writer {
            Writer::Text(h) => h.record(out, rec),
            Writer::Tree(t) => {
                t.event(out, rec, None);
                t.forget(rec);
            }
            Writer::Ecs(e) => {
                e.set_realtime_offset(i128::from(offset));
                e.record(rec);
                out.extend_from_slice(e.bytes());
                e.clear();
            }
        }
    }

    fn write_lost(&mut self, out: &mut Vec<u8>, l: &cnlink_procmon::LostEvents, offset: i64) {
        match &mut self.writer {
            Writer::Text(h) => h.lost(out, l),
            Writer::Tree(t) => t.lost(out, l),
            Writer::Ecs(e) => {
                e.set_realtime_offset(i128::from(offset));
                e.loss(l);
                out.extend_from_slice(e.bytes());
                e.clear();
            }
        }
    }
}

fn reading(offset: i64, zone: i32) -> Reading {
    Reading { monotonic_ns: 0, realtime_minus_monotonic_ns: offset, utc_offset_s: zone }
}

fn fixed_clock(offset: i64, zone: i32) -> SharedClock {
    LocalClock::starting(reading(offset, zone)).shared()
}

/// The processes of one host seen so far (their latest value), in two generations: bounded, and what was
/// seen lately is kept.
#[derive(Default)]
struct Known {
    now: HashMap<EntityId, Arc<ProcessInfo>>,
    before: HashMap<EntityId, Arc<ProcessInfo>>,
}

impl Known {
    fn get(&self, id: &EntityId) -> Option<&Arc<ProcessInfo>> {
        self.now.get(id).or_else(|| self.before.get(id))
    }

    /// What the native JSON leaves out and the stream said before: the parent's program, the entry leader of
    /// events other than exec, the values before a gid or sid change.
    fn fill(&self, rec: &mut ProcRecord) {
        if let Some(q) = rec.parent_entity_id.and_then(|id| self.get(&id)) {
            rec.parent = Some(q.clone());
        }
        let Some(p) = rec.process.clone() else { return };
        let seen = self.get(&p.entity_id);
        if p.entry_leader.is_none() {
            let from = match rec.event.data {
                EventData::Fork { child_pid, child_tgid, .. } if child_pid == child_tgid => rec.parent.as_ref(),
                _ => seen,
            };
            if let Some(l) = from.and_then(|q| q.entry_leader.clone()) {
                let mut with = (*p).clone();
                with.entry_leader = Some(l);
                rec.process = Some(Arc::new(with));
            }
        }
        if rec.previous.is_none() && matches!(rec.event.data, EventData::Gid { .. } | EventData::Sid { .. }) {
            rec.previous = seen.cloned();
        }
    }

    /// Remembers the record's process; a generation of `limit` becomes the older one.
    fn learn(&mut self, rec: &ProcRecord, limit: usize) {
        let Some(p) = &rec.process else { return };
        if self.now.len() >= limit {
            self.before = std::mem::take(&mut self.now);
        }
        self.now.insert(p.entity_id, p.clone());
    }
}

#[cfg(test)]
mod tests;
