//! Lost events, never silent: each loss the monitor learns of is an item ([`LostEvents`]) with its cause,
//! and every loss is in the cumulative counts ([`LossCounts`]), by cause and by CPU.

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossCause {
    /// Gaps in the kernel's per-CPU sequence numbers: the kernel dropped them at the socket (its receive
    /// buffer was full).
    SeqGap,
    /// The socket's drop counter: the same, counted when the kernel-side filter hides the sequence numbers.
    SocketDrops,
    /// The monitor's own queue between the receive thread and the consumer was full.
    Queue,
}

impl LossCause {
    /// `seq_gap`, `socket_drops` or `queue_overflow`.
    pub fn name(self) -> &'static str {
        match self {
            LossCause::SeqGap => "seq_gap",
            LossCause::SocketDrops => "socket_drops",
            LossCause::Queue => "queue_overflow",
        }
    }
}

/// A loss, as the monitor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LostEvents {
    /// Why.
    pub cause: LossCause,
    /// How many events, when known.
    pub count: Option<u64>,
    /// `count` is exact (false: a lower bound, or unknown).
    pub exact: bool,
    /// The CPU whose events were lost, when known (a sequence gap is charged to the CPU whose next message
    /// revealed it).
    pub cpu: Option<u32>,
    /// `CLOCK_MONOTONIC` ns when the loss was noticed (when the batch that revealed it was received).
    pub timestamp_ns: u64,
}

impl LostEvents {
    /// Exactly `count` events lost to `cause`.
    pub fn exact(cause: LossCause, count: u64, timestamp_ns: u64) -> LostEvents {
        LostEvents { cause, count: Some(count), exact: true, cpu: None, timestamp_ns }
    }
}

/// Cumulative losses, by cause and by CPU: what a ledger needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossCounts {
    /// Events lost to sequence gaps (exact counts and lower bounds summed).
    pub seq_gap: u64,
    /// Events lost according to the socket's drop counter.
    pub socket_drops: u64,
    /// Events dropped because the monitor's queue was full.
    pub queue: u64,
    /// Losses whose count was a lower bound or unknown; while 0, the totals are exact.
    pub inexact: u64,
    /// Sequence-gap losses by CPU (index: CPU number), each charged to the CPU whose message revealed it.
    pub per_cpu: Vec<u64>,
}

impl LossCounts {
    /// Events lost, all causes.
    pub fn total(&self) -> u64 {
        self.seq_gap + self.socket_drops + self.queue
    }

    /// Events lost by the kernel (sequence gaps and socket drops).
    pub fn kernel(&self) -> u64 {
        self.seq_gap + self.socket_drops
    }

    /// Counts one loss.
    pub fn add(&mut self, l: &LostEvents) {
        let n = l.count.unwrap_or(0);
        match l.cause {
            LossCause::SeqGap => self.seq_gap += n,
            LossCause::SocketDrops => self.socket_drops += n,
            LossCause::Queue => self.queue += n,
        }
        self.inexact += u64::from(!l.exact);
        if let (LossCause::SeqGap, Some(cpu)) = (l.cause, l.cpu) {
            let cpu = cpu as usize;
            if cpu < MAX_CPUS {
                if self.per_cpu.len() <= cpu {
                    self.per_cpu.resize(cpu + 1, 0);
                }
                self.per_cpu[cpu] += n;
            }
        }
    }
}

/// The most CPUs counted separately.
const MAX_CPUS: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_cause_and_cpu() {
        let mut c = LossCounts::default();
        c.add(&LostEvents { cpu: Some(1), ..LostEvents::exact(LossCause::SeqGap, 4, 0) });
        c.add(&LostEvents::exact(LossCause::Queue, 7, 0));
        c.add(&LostEvents { cause: LossCause::SocketDrops, count: None, exact: false, cpu: None, timestamp_ns: 0 });
        assert_eq!((c.total(), c.kernel(), c.inexact), (11, 4, 1));
        assert_eq!(c.per_cpu, [0, 4]);
        assert_eq!(LossCause::Queue.name(), "queue_overflow");
    }
}
