//! Subscribing to the proc connector: the legacy 4-byte op and the Linux 6.6 `struct proc_input` filter.
//!
//! ```text
//! legacy (any kernel)      6.6+ proc_input
//! offset size field        offset size field
//!      0    4 mcast_op          0    4 mcast_op     PROC_CN_MCAST_LISTEN 1 / PROC_CN_MCAST_IGNORE 2
//!                               4    4 event_type   PROC_EVENT_* bit set; 0 means all
//! ```

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use super::bytes::{put_u32, u32_at};
use super::error::WireError;

/// `PROC_CN_MCAST_LISTEN`: start receiving events.
pub const PROC_CN_MCAST_LISTEN: u32 = 1;
/// `PROC_CN_MCAST_IGNORE`: stop receiving events.
pub const PROC_CN_MCAST_IGNORE: u32 = 2;

/// `PROC_EVENT_NONE`: the `what` of a subscription ack.
pub const PROC_EVENT_NONE: u32 = 0x0000_0000;
/// `PROC_EVENT_FORK`.
pub const PROC_EVENT_FORK: u32 = 0x0000_0001;
/// `PROC_EVENT_EXEC`.
pub const PROC_EVENT_EXEC: u32 = 0x0000_0002;
/// `PROC_EVENT_UID`.
pub const PROC_EVENT_UID: u32 = 0x0000_0004;
/// `PROC_EVENT_GID`.
pub const PROC_EVENT_GID: u32 = 0x0000_0040;
/// `PROC_EVENT_SID`.
pub const PROC_EVENT_SID: u32 = 0x0000_0080;
/// `PROC_EVENT_PTRACE`.
pub const PROC_EVENT_PTRACE: u32 = 0x0000_0100;
/// `PROC_EVENT_COMM`.
pub const PROC_EVENT_COMM: u32 = 0x0000_0200;
/// `PROC_EVENT_NONZERO_EXIT` (6.6+): a filter bit only, never sent as `what`.
pub const PROC_EVENT_NONZERO_EXIT: u32 = 0x2000_0000;
/// `PROC_EVENT_COREDUMP`.
pub const PROC_EVENT_COREDUMP: u32 = 0x4000_0000;
/// `PROC_EVENT_EXIT`.
pub const PROC_EVENT_EXIT: u32 = 0x8000_0000;
/// `PROC_EVENT_ALL`: every bit above.
pub const PROC_EVENT_ALL: u32 = PROC_EVENT_FORK
    | PROC_EVENT_EXEC
    | PROC_EVENT_UID
    | PROC_EVENT_GID
    | PROC_EVENT_SID
    | PROC_EVENT_PTRACE
    | PROC_EVENT_COMM
    | PROC_EVENT_NONZERO_EXIT
    | PROC_EVENT_COREDUMP
    | PROC_EVENT_EXIT;

/// A set of proc event kinds (`enum proc_cn_event` used as a bit set).
///
/// Kept as the raw `u32`: unknown bits are preserved, and `0x80000000` fits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventMask(pub u32);

impl EventMask {
    /// No events.
    pub const NONE: EventMask = EventMask(0);
    /// Every event (`PROC_EVENT_ALL`).
    pub const ALL: EventMask = EventMask(PROC_EVENT_ALL);
    /// Forks (processes and threads).
    pub const FORK: EventMask = EventMask(PROC_EVENT_FORK);
    /// Successful execs.
    pub const EXEC: EventMask = EventMask(PROC_EVENT_EXEC);
    /// Uid changes.
    pub const UID: EventMask = EventMask(PROC_EVENT_UID);
    /// Gid changes.
    pub const GID: EventMask = EventMask(PROC_EVENT_GID);
    /// `setsid`.
    pub const SID: EventMask = EventMask(PROC_EVENT_SID);
    /// Ptrace attach and detach.
    pub const PTRACE: EventMask = EventMask(PROC_EVENT_PTRACE);
    /// Comm changes.
    pub const COMM: EventMask = EventMask(PROC_EVENT_COMM);
    /// Exits with a non-zero status only (kernel-side on 6.6+).
    pub const NONZERO_EXIT: EventMask = EventMask(PROC_EVENT_NONZERO_EXIT);
    /// Core dumps.
    pub const COREDUMP: EventMask = EventMask(PROC_EVENT_COREDUMP);
    /// All exits.
    pub const EXIT: EventMask = EventMask(PROC_EVENT_EXIT);

    /// True if every bit of `other` is set here.
    pub const fn contains(self, other: EventMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the kernel's filter (`cn_filter`, 6.6+) would deliver an event of kind `what` with `exit_code`
    /// to a socket subscribed with this mask. Used to apply the same filter in userspace on older kernels.
    pub const fn admits(self, what: u32, exit_code: u32) -> bool {
        let mask = self.0 & PROC_EVENT_ALL;
        let mask = if mask == 0 { PROC_EVENT_ALL } else { mask };
        if mask == PROC_EVENT_ALL {
            return true;
        }
        if mask & PROC_EVENT_NONZERO_EXIT != 0 && what == PROC_EVENT_EXIT && exit_code != 0 {
            return true;
        }
        mask & what != 0
    }
}

impl BitOr for EventMask {
    type Output = EventMask;
    fn bitor(self, rhs: EventMask) -> EventMask {
        EventMask(self.0 | rhs.0)
    }
}

impl BitOrAssign for EventMask {
    fn bitor_assign(&mut self, rhs: EventMask) {
        self.0 |= rhs.0;
    }
}

/// Event names in bit order, as the CLI and printers spell them.
pub const EVENT_NAMES: [(u32, &str); 10] = [
    (PROC_EVENT_FORK, "fork"),
    (PROC_EVENT_EXEC, "exec"),
    (PROC_EVENT_UID, "uid"),
    (PROC_EVENT_GID, "gid"),
    (PROC_EVENT_SID, "sid"),
    (PROC_EVENT_PTRACE, "ptrace"),
    (PROC_EVENT_COMM, "comm"),
    (PROC_EVENT_NONZERO_EXIT, "nonzero-exit"),
    (PROC_EVENT_COREDUMP, "coredump"),
    (PROC_EVENT_EXIT, "exit"),
];

impl fmt::Debug for EventMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventMask({:#x}: {})", self.0, self)
    }
}

impl fmt::Display for EventMask {
    /// Formats as `fork|exec|...`, with any unknown bits in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == PROC_EVENT_ALL {
            return f.write_str("all");
        }
        let mut first = true;
        let mut rest = self.0;
        for (bit, name) in EVENT_NAMES {
            if self.0 & bit != 0 {
                f.write_str(if first { "" } else { "|" })?;
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 || first {
            write!(f, "{}{:#x}", if first { "" } else { "|" }, rest)?;
        }
        Ok(())
    }
}

/// The subscription operation (`enum proc_cn_mcast_op`).
#[doc(alias = "proc_cn_mcast_op")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McastOp {
    /// `PROC_CN_MCAST_LISTEN`.
    Listen,
    /// `PROC_CN_MCAST_IGNORE`.
    Ignore,
    /// Any other value (the kernel answers `EINVAL`).
    Unknown(u32),
}

impl McastOp {
    /// The raw value.
    pub const fn to_raw(self) -> u32 {
        match self {
            McastOp::Listen => PROC_CN_MCAST_LISTEN,
            McastOp::Ignore => PROC_CN_MCAST_IGNORE,
            McastOp::Unknown(v) => v,
        }
    }

    /// From the raw value.
    pub const fn from_raw(v: u32) -> Self {
        match v {
            PROC_CN_MCAST_LISTEN => McastOp::Listen,
            PROC_CN_MCAST_IGNORE => McastOp::Ignore,
            v => McastOp::Unknown(v),
        }
    }
}

/// A subscription request: the data of a `cn_msg` sent to `{CN_IDX_PROC, CN_VAL_PROC}`.
#[doc(alias = "proc_input")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcInput {
    /// The 4-byte form every kernel understands: all events.
    Legacy(McastOp),
    /// The 8-byte `struct proc_input` of Linux 6.6+, with an event filter.
    Filtered {
        /// The operation.
        op: McastOp,
        /// The events wanted.
        events: EventMask,
    },
}

impl ProcInput {
    /// Length of the data on the wire (4 or 8).
    pub const fn wire_len(&self) -> usize {
        match self {
            ProcInput::Legacy(_) => 4,
            ProcInput::Filtered { .. } => 8,
        }
    }

    /// Decodes the data of a subscription request; the kernel ignores any length other than 4 or 8.
    pub fn parse(data: &[u8]) -> Result<Self, WireError> {
        match data.len() {
            4 => Ok(ProcInput::Legacy(McastOp::from_raw(u32_at(data, 0..4)))),
            8 => Ok(ProcInput::Filtered {
                op: McastOp::from_raw(u32_at(data, 0..4)),
                events: EventMask(u32_at(data, 4..8)),
            }),
            n => Err(WireError::LengthMismatch { claimed: n, expected: if n < 8 { 4 } else { 8 } }),
        }
    }

    /// Writes the request data into `buf`, returning its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        super::error::need(buf, self.wire_len())?;
        match *self {
            ProcInput::Legacy(op) => put_u32(buf, 0..4, op.to_raw()),
            ProcInput::Filtered { op, events } => {
                put_u32(buf, 0..4, op.to_raw());
                put_u32(buf, 4..8, events.0);
            }
        }
        Ok(self.wire_len())
    }

    /// The request data as a small array and its length.
    pub fn to_bytes(&self) -> ([u8; 8], usize) {
        let mut b = [0u8; 8];
        let n = self.emit(&mut b).unwrap_or(0);
        (b, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_kernel_value() {
        assert_eq!(PROC_EVENT_ALL, 0xE000_03C7);
    }

    #[test]
    fn filtered_exit_bytes() {
        // Spec §2.4: mcast_op=1, event_type=0x80000000.
        let (b, n) = ProcInput::Filtered { op: McastOp::Listen, events: EventMask::EXIT }.to_bytes();
        assert_eq!(&b[..n], &[1, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(
            ProcInput::parse(&b[..n]).unwrap(),
            ProcInput::Filtered { op: McastOp::Listen, events: EventMask::EXIT }
        );
        assert!(ProcInput::parse(&b[..3]).is_err());
    }

    #[test]
    fn kernel_filter_rules() {
        let m = EventMask::NONZERO_EXIT;
        assert!(m.admits(PROC_EVENT_EXIT, 256));
        assert!(!m.admits(PROC_EVENT_EXIT, 0));
        assert!(!m.admits(PROC_EVENT_FORK, 0));
        assert!((m | EventMask::EXIT).admits(PROC_EVENT_EXIT, 0));
        assert!(!EventMask::EXIT.admits(PROC_EVENT_NONE, 0), "subset filters never see acks");
        assert!(EventMask::ALL.admits(PROC_EVENT_NONE, 0));
        assert!(EventMask(0x8).admits(PROC_EVENT_FORK, 0), "a mask of unknown bits only becomes ALL");
    }

    #[test]
    fn display() {
        assert_eq!((EventMask::FORK | EventMask::EXIT).to_string(), "fork|exit");
        assert_eq!(EventMask::ALL.to_string(), "all");
        assert_eq!(EventMask(0x8 | 1).to_string(), "fork|0x8");
    }
}
