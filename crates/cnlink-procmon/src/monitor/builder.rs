//! [`MonitorBuilder`]: what to show, what to read, and where events come from.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use cnlink::proc::{ProcEvents, ProcOptions};
use cnlink::wire::EventMask;

use super::core::{Core, Counts};
use super::{Monitor, MonitorError};
use crate::filter::{FilterList, RecordFilter};
use crate::identity::HostIdentity;
use crate::pipeline::prefetch::{PrefetchStats, Prefetcher};
use crate::pipeline::queue::Queue;
use crate::pipeline::receive::{ReceiveThread, SourceStats};
use crate::pipeline::{EventSource, LiveSource, PrefetchPolicy};
use crate::procfs::{LiveProc, NoProc, ProcSource};
use crate::record::{datagram_tap, RecorderHandle, Recording};
use crate::select::Selection;
use crate::table::{ProcessTable, TableConfig};

/// The events the process table needs to stay right: creation (parents, inheritance, start times), exec
/// (programs), exit (lifetimes, reparenting), and the changes of name, credentials and session.
pub const TRACKING: EventMask = EventMask(
    EventMask::FORK.0
        | EventMask::EXEC.0
        | EventMask::EXIT.0
        | EventMask::COMM.0
        | EventMask::UID.0
        | EventMask::GID.0
        | EventMask::SID.0,
);

/// Builds a [`Monitor`].
///
/// ```no_run
/// use cnlink_procmon::{Monitor, MonitorItem, ProcFilter, Selection};
///
/// let monitor = Monitor::builder()
///     .events(Selection::parse("exec,exit")?)
///     .filter(ProcFilter::new().names(&["ssh*"]))
///     .ancestry_depth(8)
///     .build()?;
/// for item in monitor {
///     match item? {
///         MonitorItem::Record(r) => println!("{:?} {:?}", r.event.data, r.entity_id),
///         MonitorItem::Lost(l) => eprintln!("lost {:?} ({})", l.count, l.cause.name()),
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MonitorBuilder {
    selection: Selection,
    filters: FilterList,
    table: TableConfig,
    enrich: bool,
    recv_buffer: usize,
    ack_timeout: Duration,
    kernel_filter: bool,
    latency: Duration,
    queue: usize,
    prefetch: PrefetchPolicy,
    recorder: Option<RecorderHandle>,
    source: Option<Box<dyn EventSource>>,
    proc: Option<Box<dyn ProcSource + Send>>,
    host: Option<HostIdentity>,
    own_pid: Option<i32>,
}

impl Default for MonitorBuilder {
    fn default() -> Self {
        MonitorBuilder {
            selection: Selection::ALL,
            filters: FilterList::new(),
            table: TableConfig::default(),
            enrich: true,
            recv_buffer: 32 << 20,
            ack_timeout: Duration::from_secs(2),
            kernel_filter: true,
            latency: Duration::from_millis(5),
            queue: 1 << 18,
            prefetch: PrefetchPolicy::default(),
            recorder: None,
            source: None,
            proc: None,
            host: None,
            own_pid: Some(std::process::id() as i32),
        }
    }
}

impl std::fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("selection", &self.selection)
            .field("filters", &self.filters)
            .field("table", &self.table)
            .field("enrich", &self.enrich)
            .field("kernel_mask", &self.kernel_mask())
            .finish_non_exhaustive()
    }
}

impl MonitorBuilder {
    /// The event kinds to show (default: all).
    pub fn events(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Adds a filter; every filter added must pass a record for it to be shown.
    pub fn filter(mut self, f: impl RecordFilter + 'static) -> Self {
        self.filters.push(f);
        self
    }

    /// Adds a boxed filter.
    pub fn filter_boxed(mut self, f: Box<dyn RecordFilter>) -> Self {
        self.filters.push_boxed(f);
        self
    }

    /// Ancestors put on exec and exit records (default 64; 0: none).
    pub fn ancestry_depth(mut self, depth: usize) -> Self {
        self.table.ancestor_depth = depth;
        self
    }

    /// Whether to read `/proc` at all (default true). Without, nothing is read: no snapshot, no names or
    /// arguments beyond what events carry (comm events), entity ids from events; and the kernel is asked only
    /// for the events shown (and those the filters need).
    pub fn enrich(mut self, on: bool) -> Self {
        self.enrich = on;
        self
    }

    /// The process table's configuration (bounds, what to read); [`MonitorBuilder::ancestry_depth`] sets one
    /// of its fields.
    pub fn table(mut self, cfg: TableConfig) -> Self {
        self.table = cfg;
        self
    }

    /// The socket's receive buffer, in bytes (default 32 MiB; forced past `rmem_max` when privileged).
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = bytes;
        self
    }

    /// How long to wait for the kernel's ack of the subscription (default 2 s).
    pub fn ack_timeout(mut self, t: Duration) -> Self {
        self.ack_timeout = t;
        self
    }

    /// Use the kernel-side event filter (Linux 6.6+) when the events asked for are a strict subset (default
    /// true). Without, losses are counted exactly from sequence gaps.
    pub fn kernel_filter(mut self, on: bool) -> Self {
        self.kernel_filter = on;
        self
    }

    /// How long a batch waits for more events before it is handed to the consumer, and the receive thread's
    /// sleep between drains in a storm (default 5 ms; 0 hands every drain on at once).
    pub fn batch_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The most events queued between the receive thread and the consumer (default 262,144); beyond, the
    /// events of a batch are dropped and reported as a loss.
    pub fn queue(mut self, events: usize) -> Self {
        self.queue = events;
        self
    }

    /// When the receive thread reads `/proc` itself (default: [`PrefetchPolicy::default`]); at exec it also
    /// reads what the filters look at ([`RecordFilter::prefetch`]).
    pub fn prefetch(mut self, policy: PrefetchPolicy) -> Self {
        self.prefetch = policy;
        self
    }

    /// Shows a recorder everything needed to replay this monitor (see [`crate::record`]).
    pub fn recorder(mut self, r: RecorderHandle) -> Self {
        self.recorder = Some(r);
        self
    }

    /// Takes events from `source` instead of subscribing (a recording: see [`crate::replay`]). The kernel
    /// options (receive buffer, filter, ack timeout) do not apply, nor does the receive thread's prefetching.
    pub fn source(mut self, source: impl EventSource + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Answers the table's and the filters' `/proc` questions from `source` instead of the live `/proc` (a
    /// recording). The receive thread then reads nothing itself.
    pub fn proc_source(mut self, source: impl ProcSource + Send + 'static) -> Self {
        self.proc = Some(Box::new(source));
        self
    }

    /// The host the entity ids are derived from (default: read from this machine; a replay gives the
    /// recorded one).
    pub fn host(mut self, host: HostIdentity) -> Self {
        self.host = Some(host);
        self
    }

    /// The process whose events are not shown (default: this one, whose receive thread would otherwise show
    /// up; a replay gives the recorded monitor's pid).
    pub fn own_pid(mut self, pid: Option<i32>) -> Self {
        self.own_pid = pid;
        self
    }

    /// The events the kernel will be asked for: those shown, those the table needs when reading `/proc`
    /// ([`TRACKING`]), and those the filters need.
    pub fn kernel_mask(&self) -> EventMask {
        let mut m = self.selection.mask | self.filters.needs();
        if self.enrich {
            m |= TRACKING;
        }
        m
    }

    /// Subscribes (unless a source was given), seeds the table from a snapshot (when reading `/proc`),
    /// starts the filters and the receive thread.
    pub fn build(self) -> Result<Monitor, MonitorError> {
        let kernel_mask = self.kernel_mask();
        let MonitorBuilder { selection, mut filters, mut table, enrich, recorder, .. } = self;
        let host = match self.host {
            Some(h) => h,
            None => HostIdentity::read().map_err(MonitorError::Host)?,
        };
        let live_proc = self.proc.is_none();
        let source: Box<dyn EventSource> = match self.source {
            Some(s) => s,
            None => {
                let opts = ProcOptions {
                    events: kernel_mask,
                    recv_buffer: self.recv_buffer,
                    ack_timeout: self.ack_timeout,
                    batch: 256,
                    kernel_filter: self.kernel_filter,
                };
                let events = match &recorder {
                    Some(r) => ProcEvents::subscribe_with_tap(opts, datagram_tap(r.0.clone())),
                    None => ProcEvents::subscribe(opts),
                };
                Box::new(LiveSource::new(events.map_err(MonitorError::Subscribe)?))
            }
        };
        let mut proc: Box<dyn ProcSource + Send> = match self.proc {
            Some(p) => p,
            None if enrich => Box::new(LiveProc::default()),
            None => Box::new(NoProc),
        };
        if !enrich {
            table.stat_on_fork = false;
        }
        let wants = table.wants;
        let mut recorder = recorder.map(|r| r.0);
        let mut t = ProcessTable::new(host, table);
        // After subscribing: no process falls between the snapshot and the first event.
        if enrich {
            let snapshot = match &mut recorder {
                Some(tx) => Recording { inner: &mut *proc, tx }.snapshot(wants),
                None => proc.snapshot(wants),
            };
            t.seed(&snapshot);
        }
        filters.start(&t).map_err(MonitorError::Filter)?;

        let queue = Arc::new(Queue::new(self.queue));
        let stop = Arc::new(AtomicBool::new(false));
        let source_stats = Arc::new(SourceStats::default());
        let prefetch_stats = Arc::new(PrefetchStats::default());
        // What the filters look at in an exec'd process is read with its program.
        let policy = PrefetchPolicy { exec_wants: self.prefetch.exec_wants | filters.prefetch(), ..self.prefetch };
        let prefetcher = (enrich && live_proc && (policy.exec || policy.fork_stat))
            .then(|| Prefetcher::new(Box::new(LiveProc::default()), policy, wants, prefetch_stats.clone()));
        let kernel_filtered = source.kernel_filtered();
        let recv_buffer = source.recv_buffer();
        let recorder_missed = recorder.as_ref().map_or_else(|| Arc::new(AtomicU64::new(0)), |r| r.missed_counter());
        let receiver = ReceiveThread {
            source,
            queue: queue.clone(),
            stop: stop.clone(),
            latency: self.latency,
            prefetcher,
            recorder: recorder.clone(),
            counters: source_stats.clone(),
            own_pid: self.own_pid,
        };
        let thread = std::thread::Builder::new()
            .name("cnlink-recv".into())
            .spawn(move || receiver.run())
            .map_err(MonitorError::Thread)?;
        Ok(Monitor {
            queue,
            core: Core { table: t, selection, filters, own_pid: self.own_pid, counts: Counts::default() },
            source: proc,
            recorder,
            recorder_missed,
            ready: VecDeque::new(),
            stop,
            thread: Some(thread),
            source_stats,
            prefetch_stats,
            kernel_filtered,
            kernel_mask,
            recv_buffer,
            finished: false,
            handled_datagrams: 0,
        })
    }
}
