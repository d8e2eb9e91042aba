//! The daemon's log: lines go through a bounded queue to a thread that writes them to stderr, so that a slow or
//! blocked stderr (a terminal stopped with Ctrl-S, a full pipe, journald pushing back) never stops the bus. When
//! the queue is full a line is dropped and counted (`log_dropped` in STATS).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use cnlink::wire::CbId;

use crate::core::{Denial, Owner};

/// Denials logged in full before the log thins them out to one in 1000.
const DENIALS_IN_FULL: u64 = 100;

/// One log line, formatted on the logger thread.
#[derive(Debug)]
pub(crate) enum Line {
    /// A refused request, and how many refusals there have been so far.
    Denied(Denial, u64),
    /// An id came (with `verbose`).
    Registered(CbId, Owner),
    /// An id went (with `verbose`).
    Unregistered(CbId, Owner),
    /// A local callback panicked.
    Panicked {
        /// Its id.
        id: CbId,
        /// Whether it ran on the receive thread (it is not called again) or on its worker (it keeps serving).
        inline: bool,
    },
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cnlink bus: ")?;
        match self {
            Line::Denied(d, n) => {
                let who = d.from.creds.map_or("?".to_string(), |c| format!("uid {} pid {}", c.uid, c.pid));
                let id = d.id.map_or(String::new(), |id| format!(" id {id}"));
                let errno = io::Error::from_raw_os_error(d.errno() as i32);
                write!(f, "denied op {:#x}{id} from port {} ({who}): {errno} [{n} denials so far]", d.op, d.from.port)
            }
            Line::Registered(id, owner) => write!(f, "registered {id} ({owner:?})"),
            Line::Unregistered(id, owner) => write!(f, "unregistered {id} ({owner:?})"),
            Line::Panicked { id, inline: true } => {
                write!(f, "the inline callback for {id} panicked; it is not called again")
            }
            Line::Panicked { id, inline: false } => {
                write!(f, "the callback for {id} panicked on a message; it goes on with the next")
            }
        }
    }
}

/// The sending side of the log queue.
#[derive(Debug)]
pub(crate) struct Log {
    tx: SyncSender<Line>,
    denials: AtomicU64,
}

impl Log {
    /// A queue of `capacity` lines, drained to stderr by a new thread (which ends when the `Log` is dropped).
    pub(crate) fn start(capacity: usize) -> io::Result<Log> {
        let (tx, rx) = sync_channel(capacity.max(1));
        std::thread::Builder::new().name("cnlink-bus-log".into()).spawn(move || write_lines(rx))?;
        Ok(Log { tx, denials: AtomicU64::new(0) })
    }

    /// Queues `line`; false when it was dropped (the queue is full).
    #[must_use]
    pub(crate) fn line(&self, line: Line) -> bool {
        self.tx.try_send(line).is_ok()
    }

    /// Queues a denial: the first 100 in full, then one in 1000. False when a line due was dropped.
    #[must_use]
    pub(crate) fn denial(&self, d: Denial) -> bool {
        let n = self.denials.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= DENIALS_IN_FULL || n.is_multiple_of(1000) {
            return self.line(Line::Denied(d, n));
        }
        true
    }
}

/// Writes the lines to stderr (through `eprintln!`, which test harnesses capture). A stderr that fails for good
/// ends the thread (`eprintln!` panics); the lines queued after that are counted as dropped.
fn write_lines(rx: Receiver<Line>) {
    for line in rx {
        eprintln!("{line}");
    }
}
