//! Recordings in pcapng ([`cnlink_capture`]): what a [`crate::Recorder`] sees, as capture blocks, and back.
//!
//! Writing ([`to_capture`]): a datagram becomes a packet stamped with its proc event's kernel time as wall clock
//! (the receive time for other datagrams); an overrun and every loss become loss records (a sequence gap keeps
//! the message it came before); a `/proc` answer becomes a snapshot record (the start-up snapshot) or an exec
//! observation record (every other answer), both of encoding [`crate::ProcAnswer::ENCODING`]; a recorder miss
//! becomes a loss of kind [`LossKind::Recording`]; the table's state ([`RecorderEvent::State`]) becomes a snapshot
//! record of reason rotation, for the writer to start its next file with. The head of each file holds the host
//! record and a [`Session`].
//!
//! Reading ([`RecordingReader`]): one or more files in order (a rotated set), block by block, back into
//! [`crate::ReplayInput`]s for [`crate::ReplayEvents`] and [`ProcAnswer`]s for [`crate::RecordedProc`], with every
//! damage and every hole of the recording reported.

mod read;
mod session;

use cnlink_capture::{
    monotonic_to_wall, proc_event_timestamp, ExecObservation, Loss, LossKind, Record, SnapshotReason,
};

use crate::loss::{LossCause, LostEvents};
use crate::record::{ProcAnswer, RecorderEvent};

pub use read::{Head, RecordingItem, RecordingReader, USER_PORT};
pub use session::{MonitorSession, Session, SessionError, SESSION_JSON};

/// A recorder event as capture blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Captured {
    /// A packet: a datagram of the proc connector's family, stamped in ns since the epoch.
    Datagram {
        /// The packet's timestamp.
        timestamp_ns: u64,
        /// Whether the kernel sent it (the cooked header's packet type says so, as `nlmon` marks it).
        from_kernel: bool,
        /// The datagram as received.
        bytes: Vec<u8>,
    },
    /// A cnlink record.
    Record(Record),
    /// The process table's state, as a rotation snapshot record, with the datagrams shown before it (see
    /// [`RecorderEvent::State`]): what a recording starts its next file with.
    State {
        /// The snapshot record.
        record: Record,
        /// Datagrams shown before it.
        datagrams: u64,
    },
}

/// `CLOCK_MONOTONIC` ns as wall clock, with `offset` = realtime - monotonic at start.
fn wall(monotonic_ns: u64, offset: i64) -> u64 {
    monotonic_to_wall(monotonic_ns, offset)
}

/// Wall clock ns back to `CLOCK_MONOTONIC` (the inverse of the conversion [`to_capture`] makes, where neither saturates).
pub fn monotonic(wall_ns: u64, offset: i64) -> u64 {
    (i128::from(wall_ns) - i128::from(offset)).clamp(0, i128::from(u64::MAX)) as u64
}

/// A monitor's loss as a loss record.
pub fn loss_record(l: &LostEvents, before: Option<(u32, u32)>, offset: i64) -> Loss {
    Loss {
        kind: match l.cause {
            LossCause::SeqGap => LossKind::SeqGap,
            LossCause::SocketDrops => LossKind::SocketDrops,
            LossCause::Queue => LossKind::Queue,
        },
        count: l.count,
        lower_bound: l.count.is_some() && !l.exact,
        cpu: l.cpu,
        timestamp_ns: wall(l.timestamp_ns, offset),
        before,
    }
}

/// A loss record as the monitor's loss, when it is one of the monitor's kinds.
pub fn lost_events(l: &Loss, offset: i64) -> Option<LostEvents> {
    let cause = match l.kind {
        LossKind::SeqGap => LossCause::SeqGap,
        LossKind::SocketDrops => LossCause::SocketDrops,
        LossKind::Queue => LossCause::Queue,
        _ => return None,
    };
    Some(LostEvents {
        cause,
        count: l.count,
        exact: l.count.is_some() && !l.lower_bound,
        cpu: l.cpu,
        timestamp_ns: monotonic(l.timestamp_ns, offset),
    })
}

/// What `ev` becomes in a capture: `offset` (realtime - monotonic at start) turns the monitor's monotonic times
/// into wall clock; `now_ns` (wall clock) dates the records of `/proc` answers, which carry no time.
pub fn to_capture(ev: RecorderEvent, offset: i64, now_ns: u64) -> Captured {
    match ev {
        RecorderEvent::Datagram { timestamp_ns, from_port, bytes } => {
            let at = proc_event_timestamp(&bytes).unwrap_or(timestamp_ns);
            Captured::Datagram { timestamp_ns: wall(at, offset), from_kernel: from_port == 0, bytes }
        }
        RecorderEvent::Overrun { timestamp_ns } => Captured::Record(Record::Loss(Loss {
            kind: LossKind::Overrun,
            count: None,
            lower_bound: false,
            cpu: None,
            timestamp_ns: wall(timestamp_ns, offset),
            before: None,
        })),
        RecorderEvent::Lost { loss, before } => Captured::Record(Record::Loss(loss_record(&loss, before, offset))),
        RecorderEvent::Missed { count } => Captured::Record(Record::Loss(Loss {
            kind: LossKind::Recording,
            count: Some(count),
            lower_bound: false,
            cpu: None,
            timestamp_ns: now_ns,
            before: None,
        })),
        RecorderEvent::Answer(a) => Captured::Record(answer_record(&a, now_ns)),
        RecorderEvent::State { answer, datagrams } => {
            let record = match answer_record(&answer, now_ns) {
                Record::Snapshot(s) => {
                    Record::Snapshot(cnlink_capture::Snapshot { reason: SnapshotReason::Rotation, ..s })
                }
                other => other,
            };
            Captured::State { record, datagrams }
        }
    }
}

/// A `/proc` answer as a record: the snapshot as a snapshot record, anything else as an exec observation record.
pub fn answer_record(a: &ProcAnswer, now_ns: u64) -> Record {
    let data = a.encode();
    match a {
        ProcAnswer::Snapshot { .. } => Record::Snapshot(cnlink_capture::Snapshot {
            reason: SnapshotReason::Start,
            encoding: ProcAnswer::ENCODING,
            timestamp_ns: now_ns,
            data,
        }),
        _ => Record::ExecObservation(ExecObservation {
            encoding: ProcAnswer::ENCODING,
            pid: a.pid(),
            timestamp_ns: now_ns,
            data,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::{Observation, Wants};

    #[test]
    fn losses_round_trip_through_records() {
        let offset = 1_700_000_000_000_000_000;
        for l in [
            LostEvents { cpu: Some(1), ..LostEvents::exact(LossCause::SeqGap, 4, 77) },
            LostEvents { cause: LossCause::SocketDrops, count: Some(9), exact: false, cpu: None, timestamp_ns: 5 },
            LostEvents { cause: LossCause::Queue, count: None, exact: false, cpu: None, timestamp_ns: 5 },
        ] {
            let r = loss_record(&l, Some((1, 2)), offset);
            assert_eq!(r.timestamp_ns, l.timestamp_ns + offset as u64);
            assert_eq!(r.before, Some((1, 2)));
            assert_eq!(lost_events(&r, offset), Some(l));
        }
    }

    #[test]
    fn answers_become_snapshot_and_observation_records() {
        let snap = ProcAnswer::Snapshot {
            wants: Wants::ALL,
            snapshot: crate::Snapshot { ticks_per_second: 100, processes: vec![Observation::gone(1, 0)] },
        };
        let Record::Snapshot(s) = answer_record(&snap, 3) else { panic!("a snapshot record") };
        assert_eq!((s.reason, s.encoding), (SnapshotReason::Start, ProcAnswer::ENCODING));
        assert_eq!(ProcAnswer::decode(s.encoding, &s.data).unwrap(), snap);
        let exists = ProcAnswer::Exists { pid: 42, exists: false };
        let Record::ExecObservation(o) = answer_record(&exists, 3) else { panic!("an observation record") };
        assert_eq!(o.pid, 42);
        assert_eq!(ProcAnswer::decode(o.encoding, &o.data).unwrap(), exists);
    }
}
