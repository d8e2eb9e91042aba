//! Proc connector events (`struct proc_event`), the data of every message from `{CN_IDX_PROC, CN_VAL_PROC}`.
//!
//! ```text
//! rel  abs  size  field
//!   0   36     4  what          u32  PROC_EVENT_* (NONE = the ack of a subscription)
//!   4   40     4  cpu           u32  the CPU that sent it
//!   8   44     8  timestamp_ns  u64  CLOCK_MONOTONIC; not 8-aligned in a datagram
//!  16   52    24  event_data    union, by `what`:
//!                   ack       err
//!                   fork      parent_pid parent_tgid child_pid child_tgid
//!                   exec/sid  process_pid process_tgid
//!                   uid/gid   process_pid process_tgid ruid|rgid euid|egid
//!                   ptrace    process_pid process_tgid tracer_pid tracer_tgid
//!                   comm      process_pid process_tgid comm[16]
//!                   coredump  process_pid process_tgid parent_pid parent_tgid
//!                   exit      process_pid process_tgid exit_code exit_signal parent_pid parent_tgid
//! ```
//!
//! The structure is 40 bytes today and was 32 before `comm` existed; a member is decoded when its bytes are
//! present, optional trailing fields (exit's parent) read as 0 when absent, and unknown kinds are data.

use super::bytes::{i32_at, put_u32, put_u64, u32_at, u64_at};
use super::error::{need, WireError};
use super::exit_status::ExitStatus;
use super::proc_input::*;

/// Size of the fixed header before `event_data`.
pub const PROC_EVENT_HDRLEN: usize = 16;
/// Size of `struct proc_event` on current kernels.
pub const PROC_EVENT_LEN: usize = 40;
/// Size of the `event_data` union on current kernels.
pub const EVENT_DATA_LEN: usize = PROC_EVENT_LEN - PROC_EVENT_HDRLEN;
/// How many bytes of an unknown kind's `event_data` [`EventData::Unknown`] keeps.
pub const UNKNOWN_DATA_MAX: usize = 64;

/// Process id as the kernel sends it (`__kernel_pid_t`, global to the initial pid namespace).
pub type Pid = i32;

/// One proc connector event.
#[doc(alias = "proc_event")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcEvent {
    /// The CPU that sent the event.
    pub cpu: u32,
    /// `ktime_get_ns()` when it was sent (`CLOCK_MONOTONIC`).
    pub timestamp_ns: u64,
    /// What happened.
    pub data: EventData,
}

/// What happened, by kind; field names are the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventData {
    /// `PROC_EVENT_NONE`: the answer to a subscription request.
    Ack {
        /// A positive errno, 0 on success.
        err: u32,
    },
    /// `PROC_EVENT_FORK`: a task was created. A thread when `child_pid != child_tgid`.
    Fork {
        /// The creator's thread id.
        parent_pid: Pid,
        /// The creator's process id.
        parent_tgid: Pid,
        /// The new task's thread id.
        child_pid: Pid,
        /// The new task's process id.
        child_tgid: Pid,
    },
    /// `PROC_EVENT_EXEC`: an exec succeeded.
    Exec {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
    },
    /// `PROC_EVENT_UID`: user ids changed.
    Uid {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
        /// Real uid, in the initial user namespace.
        ruid: u32,
        /// Effective uid.
        euid: u32,
    },
    /// `PROC_EVENT_GID`: group ids changed.
    Gid {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
        /// Real gid, in the initial user namespace.
        rgid: u32,
        /// Effective gid.
        egid: u32,
    },
    /// `PROC_EVENT_SID`: `setsid`.
    Sid {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
    },
    /// `PROC_EVENT_PTRACE`: attach (tracer set) or detach (tracer 0).
    Ptrace {
        /// Traced thread id.
        process_pid: Pid,
        /// Traced process id.
        process_tgid: Pid,
        /// Tracer thread id, 0 on detach.
        tracer_pid: Pid,
        /// Tracer process id, 0 on detach.
        tracer_tgid: Pid,
    },
    /// `PROC_EVENT_COMM`: the task's name changed.
    Comm {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
        /// The new name, NUL-padded (see [`comm_str`]).
        comm: [u8; 16],
    },
    /// `PROC_EVENT_COREDUMP`: a core was dumped.
    Coredump {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
        /// Parent thread id (0 if unknown).
        parent_pid: Pid,
        /// Parent process id (0 if unknown).
        parent_tgid: Pid,
    },
    /// `PROC_EVENT_EXIT`: a task exited.
    Exit {
        /// Thread id.
        process_pid: Pid,
        /// Process id.
        process_tgid: Pid,
        /// Wait status (`exit(3)` gives 768); see [`ExitStatus`].
        exit_code: u32,
        /// Signal sent to the parent (`SIGCHLD` usually).
        exit_signal: u32,
        /// Parent thread id (0 if unknown or on old kernels).
        parent_pid: Pid,
        /// Parent process id (0 if unknown or on old kernels).
        parent_tgid: Pid,
    },
    /// A kind this crate does not know. New kernels add kinds; they are data, not errors.
    Unknown {
        /// The raw `what`.
        what: u32,
        /// How many bytes of `event_data` the message carried (may exceed what `data` keeps).
        len: u16,
        /// The first [`UNKNOWN_DATA_MAX`] bytes of `event_data`, zero-filled past `len`.
        data: [u8; UNKNOWN_DATA_MAX],
    },
}

/// The name in a `comm` field, up to its first NUL, lossily as UTF-8.
pub fn comm_str(comm: &[u8; 16]) -> std::borrow::Cow<'_, str> {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end])
}

const B: usize = PROC_EVENT_HDRLEN;

fn pid(d: &[u8], i: usize) -> Pid {
    i32_at(d, B + 4 * i..B + 4 * i + 4)
}

fn word(d: &[u8], i: usize) -> u32 {
    u32_at(d, B + 4 * i..B + 4 * i + 4)
}

/// `pid(i)` when present, else 0.
fn opt_pid(d: &[u8], i: usize) -> Pid {
    if d.len() >= B + 4 * i + 4 {
        pid(d, i)
    } else {
        0
    }
}

impl EventData {
    /// The `what` value of this kind.
    pub fn what(&self) -> u32 {
        match self {
            EventData::Ack { .. } => PROC_EVENT_NONE,
            EventData::Fork { .. } => PROC_EVENT_FORK,
            EventData::Exec { .. } => PROC_EVENT_EXEC,
            EventData::Uid { .. } => PROC_EVENT_UID,
            EventData::Gid { .. } => PROC_EVENT_GID,
            EventData::Sid { .. } => PROC_EVENT_SID,
            EventData::Ptrace { .. } => PROC_EVENT_PTRACE,
            EventData::Comm { .. } => PROC_EVENT_COMM,
            EventData::Coredump { .. } => PROC_EVENT_COREDUMP,
            EventData::Exit { .. } => PROC_EVENT_EXIT,
            EventData::Unknown { what, .. } => *what,
        }
    }

    /// The kind's short name: `ack`, `fork`, `exec`, `uid`, `gid`, `sid`, `ptrace`, `comm`, `coredump`, `exit`,
    /// or `unknown`.
    pub fn name(&self) -> &'static str {
        match self {
            EventData::Ack { .. } => "ack",
            EventData::Fork { .. } => "fork",
            EventData::Exec { .. } => "exec",
            EventData::Uid { .. } => "uid",
            EventData::Gid { .. } => "gid",
            EventData::Sid { .. } => "sid",
            EventData::Ptrace { .. } => "ptrace",
            EventData::Comm { .. } => "comm",
            EventData::Coredump { .. } => "coredump",
            EventData::Exit { .. } => "exit",
            EventData::Unknown { .. } => "unknown",
        }
    }

    /// The task the event is about: `(pid, tgid)` (the child for a fork); `None` for acks and unknown kinds.
    pub fn subject(&self) -> Option<(Pid, Pid)> {
        match *self {
            EventData::Fork { child_pid, child_tgid, .. } => Some((child_pid, child_tgid)),
            EventData::Exec { process_pid, process_tgid }
            | EventData::Uid { process_pid, process_tgid, .. }
            | EventData::Gid { process_pid, process_tgid, .. }
            | EventData::Sid { process_pid, process_tgid }
            | EventData::Ptrace { process_pid, process_tgid, .. }
            | EventData::Comm { process_pid, process_tgid, .. }
            | EventData::Coredump { process_pid, process_tgid, .. }
            | EventData::Exit { process_pid, process_tgid, .. } => Some((process_pid, process_tgid)),
            EventData::Ack { .. } | EventData::Unknown { .. } => None,
        }
    }

    /// The decoded exit status, for exits.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match *self {
            EventData::Exit { exit_code, .. } => Some(ExitStatus::from_raw(exit_code)),
            _ => None,
        }
    }
}

impl ProcEvent {
    /// Decodes the data of a proc connector `cn_msg`.
    ///
    /// Needs the 16-byte header and the bytes of the member `what` selects (16 for most, 24 for comm, 16 for
    /// exit, whose parent fields read as 0 when the sender's structure predates them).
    pub fn parse(d: &[u8]) -> Result<Self, WireError> {
        need(d, PROC_EVENT_HDRLEN)?;
        let what = u32_at(d, 0..4);
        let cpu = u32_at(d, 4..8);
        let timestamp_ns = u64_at(d, 8..16);
        let member = match what {
            PROC_EVENT_NONE => 4,
            PROC_EVENT_EXEC | PROC_EVENT_SID => 8,
            PROC_EVENT_COMM => 24,
            PROC_EVENT_FORK | PROC_EVENT_UID | PROC_EVENT_GID | PROC_EVENT_PTRACE | PROC_EVENT_COREDUMP
            | PROC_EVENT_EXIT => 16,
            _ => 0,
        };
        need(d, B + member)?;
        let data = match what {
            PROC_EVENT_NONE => EventData::Ack { err: word(d, 0) },
            PROC_EVENT_FORK => EventData::Fork {
                parent_pid: pid(d, 0),
                parent_tgid: pid(d, 1),
                child_pid: pid(d, 2),
                child_tgid: pid(d, 3),
            },
            PROC_EVENT_EXEC => EventData::Exec { process_pid: pid(d, 0), process_tgid: pid(d, 1) },
            PROC_EVENT_UID => {
                EventData::Uid { process_pid: pid(d, 0), process_tgid: pid(d, 1), ruid: word(d, 2), euid: word(d, 3) }
            }
            PROC_EVENT_GID => {
                EventData::Gid { process_pid: pid(d, 0), process_tgid: pid(d, 1), rgid: word(d, 2), egid: word(d, 3) }
            }
            PROC_EVENT_SID => EventData::Sid { process_pid: pid(d, 0), process_tgid: pid(d, 1) },
            PROC_EVENT_PTRACE => EventData::Ptrace {
                process_pid: pid(d, 0),
                process_tgid: pid(d, 1),
                tracer_pid: pid(d, 2),
                tracer_tgid: pid(d, 3),
            },
            PROC_EVENT_COMM => {
                let mut comm = [0u8; 16];
                comm.copy_from_slice(&d[B + 8..B + 24]);
                EventData::Comm { process_pid: pid(d, 0), process_tgid: pid(d, 1), comm }
            }
            PROC_EVENT_COREDUMP => EventData::Coredump {
                process_pid: pid(d, 0),
                process_tgid: pid(d, 1),
                parent_pid: pid(d, 2),
                parent_tgid: pid(d, 3),
            },
            PROC_EVENT_EXIT => EventData::Exit {
                process_pid: pid(d, 0),
                process_tgid: pid(d, 1),
                exit_code: word(d, 2),
                exit_signal: word(d, 3),
                parent_pid: opt_pid(d, 4),
                parent_tgid: opt_pid(d, 5),
            },
            what => {
                let mut data = [0u8; UNKNOWN_DATA_MAX];
                let avail = (d.len() - B).min(UNKNOWN_DATA_MAX);
                data[..avail].copy_from_slice(&d[B..B + avail]);
                EventData::Unknown { what, len: (d.len() - B).min(u16::MAX as usize) as u16, data }
            }
        };
        Ok(ProcEvent { cpu, timestamp_ns, data })
    }

    /// How many bytes [`ProcEvent::emit`] writes: 40 (`struct proc_event` today), or for an unknown kind its
    /// header and the `event_data` it keeps, at least the 24 bytes of today's union.
    pub fn wire_len(&self) -> usize {
        match self.data {
            EventData::Unknown { len, .. } => B + usize::from(len).clamp(EVENT_DATA_LEN, UNKNOWN_DATA_MAX),
            _ => PROC_EVENT_LEN,
        }
    }

    /// Writes `struct proc_event` into `buf` as the current kernel lays it out ([`ProcEvent::wire_len`] bytes);
    /// returns the length written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let n = self.wire_len();
        need(buf, n)?;
        let d = &mut buf[..n];
        d.fill(0);
        put_u32(d, 0..4, self.data.what());
        put_u32(d, 4..8, self.cpu);
        put_u64(d, 8..16, self.timestamp_ns);
        let mut words = |vals: &[u32]| {
            for (i, v) in vals.iter().enumerate() {
                put_u32(d, B + 4 * i..B + 4 * i + 4, *v);
            }
        };
        match self.data {
            EventData::Ack { err } => words(&[err]),
            EventData::Fork { parent_pid, parent_tgid, child_pid, child_tgid } => {
                words(&[parent_pid as u32, parent_tgid as u32, child_pid as u32, child_tgid as u32])
            }
            EventData::Exec { process_pid, process_tgid } | EventData::Sid { process_pid, process_tgid } => {
                words(&[process_pid as u32, process_tgid as u32])
            }
            EventData::Uid { process_pid, process_tgid, ruid: a, euid: b }
            | EventData::Gid { process_pid, process_tgid, rgid: a, egid: b } => {
                words(&[process_pid as u32, process_tgid as u32, a, b])
            }
            EventData::Ptrace { process_pid, process_tgid, tracer_pid: a, tracer_tgid: b }
            | EventData::Coredump { process_pid, process_tgid, parent_pid: a, parent_tgid: b } => {
                words(&[process_pid as u32, process_tgid as u32, a as u32, b as u32])
            }
            EventData::Comm { process_pid, process_tgid, comm } => {
                words(&[process_pid as u32, process_tgid as u32]);
                d[B + 8..B + 24].copy_from_slice(&comm);
            }
            EventData::Exit { process_pid, process_tgid, exit_code, exit_signal, parent_pid, parent_tgid } => {
                words(&[
                    process_pid as u32,
                    process_tgid as u32,
                    exit_code,
                    exit_signal,
                    parent_pid as u32,
                    parent_tgid as u32,
                ]);
            }
            EventData::Unknown { data, .. } => d[B..].copy_from_slice(&data[..n - B]),
        }
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::{CnMsg, NlMsg};

    /// The ack the 6.18 kernel sent for a request with seq=0x11223344, ack=0x55667788 (spec §2.4).
    pub(crate) const ACK_DATAGRAM: [u8; 76] = [
        0x4c, 0, 0, 0, 3, 0, 0, 0, // nlmsg_len 76, NLMSG_DONE, flags 0
        0x86, 0x2a, 0x15, 0, 0, 0, 0, 0, // nlmsg_seq = per-CPU counter, nlmsg_pid 0
        1, 0, 0, 0, 1, 0, 0, 0, // id {1, 1}
        0x86, 0x2a, 0x15, 0, // seq = the same counter, not the request's
        0x89, 0x77, 0x66, 0x55, // ack = request ack + 1
        0x28, 0, 0, 0, // len 40, flags 0
        0, 0, 0, 0, // what = PROC_EVENT_NONE
        1, 0, 0, 0, // cpu 1
        0xa2, 0xa3, 0x78, 0xcf, 0x73, 0x01, 0, 0, // timestamp_ns (unaligned at offset 44)
        0, 0, 0, 0, // err 0
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // rest of the union
    ];

    #[test]
    fn captured_ack() {
        let nl = NlMsg::new_checked(&ACK_DATAGRAM[..]).unwrap();
        let cn = CnMsg::new_checked(nl.payload()).unwrap();
        assert_eq!(cn.ack(), 0x5566_7789);
        assert_eq!(cn.seq(), nl.nlmsg_seq());
        let ev = ProcEvent::parse(cn.data()).unwrap();
        assert_eq!(ev.cpu, 1);
        assert_eq!(ev.timestamp_ns, 0x0173_cf78_a3a2);
        assert_eq!(ev.data, EventData::Ack { err: 0 });
    }

    #[test]
    fn fork_offsets() {
        let ev = ProcEvent {
            cpu: 0,
            timestamp_ns: 5,
            data: EventData::Fork { parent_pid: 10, parent_tgid: 11, child_pid: 12, child_tgid: 11 },
        };
        let mut b = [0u8; 40];
        ev.emit(&mut b).unwrap();
        // Absolute offsets 52/56/60/64 in a datagram are 16/20/24/28 here.
        assert_eq!(&b[16..20], &10i32.to_ne_bytes());
        assert_eq!(&b[24..28], &12i32.to_ne_bytes());
        assert_eq!(ProcEvent::parse(&b).unwrap(), ev);
    }

    #[test]
    fn old_32_byte_exit_has_no_parent() {
        let ev = ProcEvent {
            cpu: 3,
            timestamp_ns: 1,
            data: EventData::Exit {
                process_pid: 7,
                process_tgid: 7,
                exit_code: 768,
                exit_signal: 17,
                parent_pid: 1,
                parent_tgid: 1,
            },
        };
        let mut b = [0u8; 40];
        ev.emit(&mut b).unwrap();
        let old = ProcEvent::parse(&b[..32]).unwrap();
        assert!(matches!(old.data, EventData::Exit { exit_code: 768, parent_pid: 0, parent_tgid: 0, .. }));
        assert_eq!(old.data.exit_status(), Some(ExitStatus::Exited(3)));
        assert!(ProcEvent::parse(&b[..31]).is_err());
    }

    #[test]
    fn unknown_kind_is_data() {
        let mut b = [0u8; 40];
        b[0..4].copy_from_slice(&0x400u32.to_ne_bytes());
        b[16] = 0xaa;
        let ev = ProcEvent::parse(&b).unwrap();
        assert!(matches!(ev.data, EventData::Unknown { what: 0x400, len: 24, data } if data[0] == 0xaa));
        let mut out = [0u8; 40];
        assert_eq!(ev.emit(&mut out), Ok(40));
        assert_eq!(out, b);
    }

    #[test]
    fn a_longer_unknown_kind_keeps_its_length_and_64_bytes() {
        let mut b = [0u8; 16 + 100];
        b[0..4].copy_from_slice(&0x800u32.to_ne_bytes());
        for (i, x) in b[16..].iter_mut().enumerate() {
            *x = i as u8;
        }
        let ev = ProcEvent::parse(&b).unwrap();
        let EventData::Unknown { what: 0x800, len: 100, data } = ev.data else { panic!("{ev:?}") };
        assert_eq!(data[63], 63);
        assert_eq!(ev.wire_len(), 16 + 64);
        let mut out = [0u8; 80];
        assert_eq!(ev.emit(&mut out), Ok(80));
        assert_eq!(out[..], b[..80]);
        // What was emitted parses back to the same kind with the length it kept.
        assert!(
            matches!(ProcEvent::parse(&out).unwrap().data, EventData::Unknown { len: 64, data: d, .. } if d == data)
        );
    }

    #[test]
    fn comm_name() {
        let mut comm = [0u8; 16];
        comm[..15].copy_from_slice(b"renamed-thr-xyz");
        assert_eq!(comm_str(&comm), "renamed-thr-xyz");
    }
}
