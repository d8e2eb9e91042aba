//! Decoding the wait status in an exit event's `exit_code`.

use core::fmt;

/// How a task ended, decoded from its wait status (`WIFEXITED`/`WIFSIGNALED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// Normal exit with this code (`WEXITSTATUS`).
    Exited(u8),
    /// Killed by a signal (`WTERMSIG`), possibly dumping core (`WCOREDUMP`).
    Signaled {
        /// The signal number.
        signal: u8,
        /// Whether a core was dumped.
        core_dumped: bool,
    },
    /// A status that is neither (stopped or continued encodings); the raw value.
    Other(u32),
}

impl ExitStatus {
    /// Decodes a raw wait status.
    pub const fn from_raw(status: u32) -> Self {
        let low = status & 0x7f;
        if low == 0 {
            ExitStatus::Exited(((status >> 8) & 0xff) as u8)
        } else if low != 0x7f && status & 0xffff_0000 == 0 && (status >> 8) & 0xff == 0 {
            ExitStatus::Signaled { signal: low as u8, core_dumped: status & 0x80 != 0 }
        } else {
            ExitStatus::Other(status)
        }
    }

    /// True for `Exited(0)`.
    pub const fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }
}

impl fmt::Display for ExitStatus {
    /// `exit 3`, `signal 9`, `signal 11 (core dumped)`, or `status 0x...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(c) => write!(f, "exit {c}"),
            ExitStatus::Signaled { signal, core_dumped: false } => write!(f, "signal {signal}"),
            ExitStatus::Signaled { signal, core_dumped: true } => write!(f, "signal {signal} (core dumped)"),
            ExitStatus::Other(s) => write!(f, "status {s:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_libc() {
        assert_eq!(ExitStatus::from_raw(768), ExitStatus::Exited(3));
        assert_eq!(ExitStatus::from_raw(0), ExitStatus::Exited(0));
        assert_eq!(ExitStatus::from_raw(9), ExitStatus::Signaled { signal: 9, core_dumped: false });
        assert_eq!(ExitStatus::from_raw(0x8b), ExitStatus::Signaled { signal: 11, core_dumped: true });
        assert_eq!(ExitStatus::from_raw(0x137f), ExitStatus::Other(0x137f));
        for s in [0u32, 256, 768, 9, 0x8b, 15, 0xff00] {
            let st = s as i32;
            match ExitStatus::from_raw(s) {
                ExitStatus::Exited(c) => {
                    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == c as i32)
                }
                ExitStatus::Signaled { signal, core_dumped } => {
                    assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == signal as i32);
                    assert_eq!(libc::WCOREDUMP(st), core_dumped);
                }
                ExitStatus::Other(_) => assert!(!libc::WIFEXITED(st) && !libc::WIFSIGNALED(st)),
            }
        }
    }
}
