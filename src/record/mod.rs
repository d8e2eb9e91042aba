//! Recording: what `cnlink listen --record`, `cnlink record` and `cnlink proc --record` write, and how.
//!
//! ```text
//!  receiver ──try_send──> bounded channel ──> writer thread ──> RotatingWriter ──> FILE or FILE-000001...
//!  (never waits)           full: dropped, counted, then a loss record (queue) says how many
//! ```
//!
//! The receiving thread hands [`Entry`]s (datagrams exactly as received, cnlink records) to a [`RecordTx`] or, for
//! the process monitor, to the monitor's own recorder channel; the [`writer`] thread writes them to pcapng with
//! the host record and a session record ([`Session`]) at the head of every file.

pub(crate) mod args;
pub(crate) mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use cnlink_capture::{Clock, Loss, LossKind, Record};
use cnlink_procmon::capture::{to_capture, Captured};
use cnlink_procmon::Recorder;

pub(crate) use args::RecordArgs;
pub(crate) use cnlink_procmon::capture::Session;
pub(crate) use writer::spawn;

/// One thing to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A datagram exactly as received.
    Datagram {
        /// The packet's timestamp: ns since the epoch.
        timestamp_ns: u64,
        /// Its netlink family.
        protocol: u16,
        /// Whether the kernel sent it.
        from_kernel: bool,
        /// The bytes.
        bytes: Arc<[u8]>,
    },
    /// A cnlink record (loss, snapshot, observation, note, clock).
    Record(Record),
    /// The model's state, asked for with [`Input::request_state`]: the next file starts with `record` (a
    /// rotation snapshot), after the first `datagrams` datagrams the producers showed (see
    /// [`cnlink_procmon::RecorderEvent::State`]).
    State {
        /// The rotation snapshot.
        record: Record,
        /// Datagrams shown before it.
        datagrams: u64,
    },
}

impl Entry {
    /// Which producer made it: the receiving side (datagrams and the losses found with them) or not (`/proc`
    /// answers, clock steps, holes).
    fn received(&self) -> bool {
        match self {
            Entry::Datagram { .. } => true,
            Entry::Record(Record::Loss(l)) => l.kind != LossKind::Recording,
            _ => false,
        }
    }

    /// About how many bytes it takes in a file.
    fn size(&self) -> u64 {
        match self {
            Entry::Datagram { bytes, .. } => 64 + bytes.len() as u64,
            Entry::Record(Record::Snapshot(s)) => 64 + s.data.len() as u64,
            Entry::Record(Record::ExecObservation(o)) => 64 + o.data.len() as u64,
            _ => 64,
        }
    }
}

/// What the writer thread's input gave.
#[derive(Debug)]
pub(crate) enum Recv {
    /// Something to write.
    Entry(Entry),
    /// Nothing came within the wait.
    Idle,
    /// The producers are gone and everything was taken.
    Closed,
}

/// Where the writer thread takes its entries from.
pub(crate) trait Input: Send + 'static {
    /// The next entry, waiting at most `wait`.
    fn recv(&mut self, wait: Duration) -> Recv;

    /// Entries the producers could not hand over so far (the channel was full).
    fn missed(&self) -> u64;

    /// Whether a new file must start with the model's state ([`Input::request_state`], then an
    /// [`Entry::State`]); otherwise files start with the clock only.
    fn has_state(&self) -> bool {
        false
    }

    /// Asks the producers for the model's state once the first `after` datagrams they showed were handled.
    fn request_state(&self, _after: u64) {}
}

/// The producers' end of a recording channel: sending never waits. What does not fit is counted and, once
/// there is room again, reported in the file as a [`LossKind::Recording`] record ahead of the next entry.
#[derive(Debug, Clone)]
pub(crate) struct RecordTx {
    tx: SyncSender<Entry>,
    missed: Arc<AtomicU64>,
    /// Misses not yet reported in the channel.
    pending: u64,
}

/// The writer thread's end of [`channel`].
#[derive(Debug)]
pub(crate) struct RecordRx {
    rx: Receiver<Entry>,
    missed: Arc<AtomicU64>,
}

/// A recording channel holding at most `capacity` entries.
pub(crate) fn channel(capacity: usize) -> (RecordTx, RecordRx) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    let missed = Arc::new(AtomicU64::new(0));
    (RecordTx { tx, missed: missed.clone(), pending: 0 }, RecordRx { rx, missed })
}

impl RecordTx {
    /// Hands `entry` to the writer thread, or counts it as missed; `now_ns` (wall clock) dates the loss record
    /// of earlier misses.
    pub(crate) fn send(&mut self, now_ns: u64, entry: Entry) {
        if self.pending > 0 {
            let loss = Loss {
                kind: LossKind::Recording,
                count: Some(self.pending),
                lower_bound: false,
                cpu: None,
                timestamp_ns: now_ns,
                before: None,
            };
            if self.tx.try_send(Entry::Record(Record::Loss(loss))).is_err() {
                self.miss();
                return;
            }
            self.pending = 0;
        }
        if self.tx.try_send(entry).is_err() {
            self.miss();
        }
    }

    /// Entries missed so far.
    #[cfg(test)]
    pub(crate) fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }

    fn miss(&mut self) {
        self.pending += 1;
        self.missed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Input for RecordRx {
    fn recv(&mut self, wait: Duration) -> Recv {
        match self.rx.recv_timeout(wait) {
            Ok(e) => Recv::Entry(e),
            Err(RecvTimeoutError::Timeout) => Recv::Idle,
            Err(RecvTimeoutError::Disconnected) => Recv::Closed,
        }
    }

    fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

/// The process monitor's recorder channel as the writer thread's input, with the time column's clock steps.
#[derive(Debug)]
pub(crate) struct MonitorInput {
    /// The channel.
    pub(crate) recorder: Recorder,
    /// `realtime - monotonic` at start.
    pub(crate) offset: i64,
    /// Clock steps from the main loop.
    pub(crate) clock: Receiver<Clock>,
}

impl Input for MonitorInput {
    fn recv(&mut self, wait: Duration) -> Recv {
        if let Ok(step) = self.clock.try_recv() {
            return Recv::Entry(Entry::Record(Record::Clock(step)));
        }
        let ev = match self.recorder.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Disconnected) => return Recv::Closed,
            Err(RecvTimeoutError::Timeout) => return Recv::Idle,
        };
        Recv::Entry(match to_capture(ev, self.offset, wall_ns()) {
            Captured::Datagram { timestamp_ns, from_kernel, bytes } => Entry::Datagram {
                timestamp_ns,
                protocol: cnlink_capture::NETLINK_CONNECTOR,
                from_kernel,
                bytes: Arc::from(bytes),
            },
            Captured::Record(r) => Entry::Record(r),
            Captured::State { record, datagrams } => Entry::State { record, datagrams },
        })
    }

    fn missed(&self) -> u64 {
        self.recorder.missed()
    }

    fn has_state(&self) -> bool {
        true
    }

    fn request_state(&self, after: u64) {
        self.recorder.request_state(after);
    }
}

/// A process monitor's recording: its writer thread, and where it writes.
#[derive(Debug)]
pub(crate) struct MonitorRecording {
    recording: writer::Recording,
    command: &'static str,
    clock: mpsc::Sender<Clock>,
}

/// Starts recording `mon` (built with `rec`'s handle as its recorder) as `to` says: the host record, a session
/// record with the monitor's settings, the time column's clock (`clock`, its steps so far), then everything the
/// recorder delivers and every later clock step ([`MonitorRecording::clock`]).
pub(crate) fn monitor(
    to: &crate::monitor::RecordTo,
    mon: &cnlink_procmon::Monitor,
    enrich: bool,
    host: Option<cnlink_procmon::HostIdentity>,
    clock: &[Clock],
    rec: Recorder,
) -> anyhow::Result<MonitorRecording> {
    let info = cnlink_capture::HostInfo::collect();
    let offset = info.monotonic_to_realtime_ns();
    let host = match host {
        Some(h) => h,
        None => cnlink_procmon::HostIdentity::read()?,
    };
    let session = Session {
        monitor: Some(cnlink_procmon::capture::MonitorSession {
            kernel_mask: mon.kernel_mask().0,
            kernel_filtered: mon.kernel_filtered(),
            enrich,
            host_id: host.host_id,
            boot_id: host.boot_id,
        }),
        ..Session::new(to.command)
    };
    let mut header = cnlink_capture::FileHeader::netlink(&[cnlink_capture::NETLINK_CONNECTOR])
        .with_host(info)
        .with_record(session.record(wall_ns()));
    header.records.extend(clock.iter().map(|&c| Record::Clock(c)));
    let (clock_tx, clock_rx) = mpsc::channel();
    let input = MonitorInput { recorder: rec, offset, clock: clock_rx };
    let recording = spawn(to.rotation.config(&to.path), header, input)?;
    Ok(MonitorRecording { recording, command: to.command, clock: clock_tx })
}

impl MonitorRecording {
    /// Records a step of the time column's clock.
    pub(crate) fn clock(&self, step: Clock) {
        // The writer thread is gone only after a write error, which `finish_and_report` reports.
        let _ = self.clock.send(step);
    }

    /// Waits for everything to be written (after the monitor is dropped) and says on stderr what was.
    pub(crate) fn finish_and_report(self) -> anyhow::Result<()> {
        let w = self.recording.finish()?;
        let files: Vec<String> = w.files.iter().map(|f| f.display().to_string()).collect();
        eprintln!(
            "cnlink {}: recorded {} datagrams and {} records to {}; {} missed by the recording",
            self.command,
            w.packets,
            w.records,
            files.join(", "),
            w.missed
        );
        Ok(())
    }
}

/// `CLOCK_REALTIME` now, in ns since the epoch.
pub(crate) fn wall_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(n: u8) -> Entry {
        Entry::Datagram { timestamp_ns: u64::from(n), protocol: 11, from_kernel: true, bytes: Arc::from(vec![n; 4]) }
    }

    #[test]
    fn a_full_channel_counts_misses_then_reports_them_as_a_recording_loss() {
        let (mut tx, mut rx) = channel(2);
        for n in 0..5 {
            tx.send(100, datagram(n));
        }
        assert_eq!(tx.missed(), 3);
        let mut got = Vec::new();
        while let Recv::Entry(e) = rx.recv(Duration::ZERO) {
            got.push(e);
        }
        assert_eq!(got, [datagram(0), datagram(1)]);
        tx.send(200, datagram(9));
        let loss = Loss {
            kind: LossKind::Recording,
            count: Some(3),
            lower_bound: false,
            cpu: None,
            timestamp_ns: 200,
            before: None,
        };
        assert!(matches!(rx.recv(Duration::ZERO), Recv::Entry(Entry::Record(Record::Loss(l))) if l == loss));
        assert!(matches!(rx.recv(Duration::ZERO), Recv::Entry(e) if e == datagram(9)));
        assert_eq!(rx.missed(), 3);
        drop(tx);
        assert!(matches!(rx.recv(Duration::ZERO), Recv::Closed));
    }
}
