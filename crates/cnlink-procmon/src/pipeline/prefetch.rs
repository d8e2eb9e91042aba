//! Reading `/proc` on the receive thread the moment an event is decoded, within bounds.
//!
//! A short-lived program is gone a millisecond after its exec; read after a batch delay, it has no name. So the
//! receive thread reads what an exec needs (`/proc/PID`, a few system calls) as soon as the exec is decoded,
//! and hands the observation on with the batch ([`crate::Prefetched`]). It must still never fall behind the
//! kernel, so each read is allowed only when:
//!
//! - the event is fresh: at most [`PrefetchPolicy::max_lag`] old (an older exec waits for the consumer: the
//!   receive thread is behind, and reading would put it further behind);
//! - the time budget allows: prefetching may take at most [`PrefetchPolicy::share`] of the receive thread's
//!   time, with bursts of up to [`PrefetchPolicy::burst`] (a token bucket); an exec storm spends the budget
//!   and the rest of its execs are read by the consumer as before;
//! - the observations queued for the consumer stay under [`PrefetchPolicy::max_queued_bytes`].
//!
//! While reading, the receive thread drains the socket again every millisecond, so a run of reads never
//! lets the socket's buffer fill.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::procfs::{Observation, ProcSource, Wants};

/// How often the receive thread drains the socket while it reads `/proc`.
pub(crate) const REDRAIN: Duration = Duration::from_millis(1);

/// When the receive thread reads `/proc` itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefetchPolicy {
    /// Read at exec at all.
    pub exec: bool,
    /// What to read at exec on the receive thread (at most what the table wants); the table reads the rest
    /// when it handles the exec, and adds it when it is the same process's. By default what names the
    /// program ([`Wants::PROGRAM`]): few system calls, so that the receive thread is back on the socket soon.
    pub exec_wants: Wants,
    /// Also read a forked child's `stat` at once (its start time, for an entity id of the `stat` form even when
    /// the child is gone before the table gets to it). Off by default: it costs the receive thread a read per
    /// fork, and a short-lived child keeps a `fork_event` id, as stable as the other.
    pub fork_stat: bool,
    /// Events older than this are left to the consumer.
    pub max_lag: Duration,
    /// The most of the receive thread's time prefetching may take (0 to 1).
    pub share: f64,
    /// The most prefetching time spent at once.
    pub burst: Duration,
    /// The most bytes of prefetched observations waiting for the consumer.
    pub max_queued_bytes: usize,
}

impl Default for PrefetchPolicy {
    fn default() -> Self {
        PrefetchPolicy {
            exec: true,
            exec_wants: Wants::PROGRAM,
            fork_stat: false,
            max_lag: Duration::from_millis(100),
            share: 0.5,
            burst: Duration::from_millis(20),
            max_queued_bytes: 8 << 20,
        }
    }
}

impl PrefetchPolicy {
    /// Never read on the receive thread.
    pub const OFF: PrefetchPolicy = PrefetchPolicy {
        exec: false,
        exec_wants: Wants::STAT,
        fork_stat: false,
        max_lag: Duration::ZERO,
        share: 0.0,
        burst: Duration::ZERO,
        max_queued_bytes: 0,
    };
}

/// Why a read was or was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Read now.
    Read,
    /// The event is older than `max_lag`.
    Stale,
    /// The time budget is spent.
    Budget,
    /// Too many observations wait for the consumer.
    Memory,
}

/// The time budget: a token bucket in ns, refilled at `share` of the time that passes.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    tokens: f64,
    last_ns: Option<u64>,
    share: f64,
    burst: f64,
}

impl Budget {
    pub(crate) fn new(share: f64, burst: Duration) -> Budget {
        let burst = burst.as_nanos() as f64;
        Budget { tokens: burst, last_ns: None, share: share.clamp(0.0, 1.0), burst }
    }

    fn refill(&mut self, now_ns: u64) {
        if let Some(last) = self.last_ns {
            self.tokens = (self.tokens + now_ns.saturating_sub(last) as f64 * self.share).min(self.burst);
        }
        self.last_ns = Some(now_ns);
    }

    /// Whether a read may start at `now_ns`.
    pub(crate) fn allows(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.tokens > 0.0
    }

    /// A read took `ns`.
    pub(crate) fn spend(&mut self, ns: u64) {
        self.tokens -= ns as f64;
    }
}

/// Counters of the receive thread's reads, shared with the monitor.
#[derive(Debug, Default)]
pub(crate) struct PrefetchStats {
    pub(crate) read: AtomicU64,
    pub(crate) gone: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) budget: AtomicU64,
    pub(crate) memory: AtomicU64,
    pub(crate) ns: AtomicU64,
}

/// Counters of the receive thread's `/proc` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefetchCounters {
    /// Reads made at once.
    pub read: u64,
    /// Of those, the process was already gone.
    pub gone: u64,
    /// Left to the consumer: the event was older than the lag limit.
    pub stale: u64,
    /// Left to the consumer: the time budget was spent.
    pub over_budget: u64,
    /// Left to the consumer: too many observations waited.
    pub over_memory: u64,
    /// Time spent reading, ns.
    pub time_ns: u64,
}

impl PrefetchStats {
    pub(crate) fn snapshot(&self) -> PrefetchCounters {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PrefetchCounters {
            read: g(&self.read),
            gone: g(&self.gone),
            stale: g(&self.stale),
            over_budget: g(&self.budget),
            over_memory: g(&self.memory),
            time_ns: g(&self.ns),
        }
    }
}

/// The receive thread's reader.
pub(crate) struct Prefetcher {
    pub(crate) source: Box<dyn ProcSource + Send>,
    pub(crate) policy: PrefetchPolicy,
    /// What an exec needs (the table's wants).
    pub(crate) wants: Wants,
    budget: Budget,
    pub(crate) stats: std::sync::Arc<PrefetchStats>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher").field("policy", &self.policy).field("wants", &self.wants).finish()
    }
}

impl Prefetcher {
    pub(crate) fn new(
        source: Box<dyn ProcSource + Send>,
        policy: PrefetchPolicy,
        wants: Wants,
        stats: std::sync::Arc<PrefetchStats>,
    ) -> Prefetcher {
        Prefetcher { source, policy, wants, budget: Budget::new(policy.share, policy.burst), stats }
    }

    /// What to read at exec: the policy's, within the table's.
    pub(crate) fn exec_wants(&self) -> Wants {
        let p = self.policy.exec_wants;
        Wants {
            program: p.program && self.wants.program,
            cwd: p.cwd && self.wants.cwd,
            status: p.status && self.wants.status,
            cgroup: p.cgroup && self.wants.cgroup,
            namespaces: p.namespaces && self.wants.namespaces,
        }
    }

    /// Whether to read for an event of `event_ns` at `now_ns`, with `queued` bytes of observations waiting.
    pub(crate) fn decide(&mut self, now_ns: u64, event_ns: u64, queued: usize) -> Decision {
        let d = if now_ns.saturating_sub(event_ns) > self.policy.max_lag.as_nanos() as u64 {
            Decision::Stale
        } else if queued > self.policy.max_queued_bytes {
            Decision::Memory
        } else if !self.budget.allows(now_ns) {
            Decision::Budget
        } else {
            Decision::Read
        };
        let counter = match d {
            Decision::Read => return d,
            Decision::Stale => &self.stats.stale,
            Decision::Budget => &self.stats.budget,
            Decision::Memory => &self.stats.memory,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        d
    }

    /// Reads `pid` with `wants`, charging the time to the budget.
    pub(crate) fn read(&mut self, pid: i32, wants: Wants, clock: impl Fn() -> u64) -> Observation {
        let t0 = clock();
        let o = self.source.observe(pid, wants);
        let spent = clock().saturating_sub(t0);
        self.budget.spend(spent);
        self.stats.read.fetch_add(1, Ordering::Relaxed);
        self.stats.ns.fetch_add(spent, Ordering::Relaxed);
        if o.stat.is_none() {
            self.stats.gone.fetch_add(1, Ordering::Relaxed);
        }
        o
    }
}

/// Approximate bytes an observation holds.
pub(crate) fn observation_bytes(o: &Observation) -> usize {
    std::mem::size_of::<Observation>()
        + o.stat.as_ref().map_or(0, |s| s.name.len())
        + o.argv.as_ref().map_or(0, |a| a.bytes.len())
        + o.exe.as_ref().map_or(0, |e| e.path.len())
        + o.cwd.as_ref().map_or(0, |c| c.path.len())
        + o.status_fields.as_ref().map_or(0, |s| s.nspid.len() * 4)
        + o.cgroup.as_ref().map_or(0, |c| c.bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_budget_allows_bursts_then_its_share() {
        let mut b = Budget::new(0.5, Duration::from_millis(20));
        assert!(b.allows(0));
        b.spend(25 * MS);
        // 5 ms in debt: refilled at half the time that passes, it allows again after 10 ms.
        assert!(!b.allows(9 * MS));
        assert!(b.allows(11 * MS));
        // It never saves more than the burst.
        assert!(b.allows(1_000 * MS));
        b.spend(21 * MS);
        assert!(!b.allows(1_000 * MS + 1));
    }

    struct Slow(u64);

    impl ProcSource for Slow {
        fn observe(&mut self, pid: i32, _: Wants) -> Observation {
            self.0 += 1;
            Observation::gone(pid, 0)
        }
        fn exists(&mut self, _: i32) -> bool {
            false
        }
        fn snapshot(&mut self, _: Wants) -> crate::Snapshot {
            crate::Snapshot { ticks_per_second: 100, processes: Vec::new() }
        }
    }

    #[test]
    fn stale_events_memory_and_budget_defer_reads() {
        let stats = std::sync::Arc::new(PrefetchStats::default());
        let policy = PrefetchPolicy { burst: Duration::from_millis(2), ..PrefetchPolicy::default() };
        let mut p = Prefetcher::new(Box::new(Slow(0)), policy, Wants::ALL, stats.clone());
        assert_eq!(p.decide(200 * MS, 50 * MS, 0), Decision::Stale);
        assert_eq!(p.decide(200 * MS, 150 * MS, 64 << 20), Decision::Memory);
        assert_eq!(p.decide(200 * MS, 150 * MS, 0), Decision::Read);
        // A read that takes 3 ms (simulated clock) spends the 2 ms burst.
        let t = std::cell::Cell::new(200 * MS);
        let o = p.read(7, Wants::ALL, || {
            let now = t.get();
            t.set(now + 3 * MS);
            now
        });
        assert_eq!(o.pid, 7);
        assert_eq!(p.decide(201 * MS, 200 * MS, 0), Decision::Budget);
        let c = stats.snapshot();
        assert_eq!((c.read, c.gone, c.stale, c.over_memory, c.over_budget, c.time_ns), (1, 1, 1, 1, 1, 3 * MS));
    }
}
