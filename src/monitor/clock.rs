//! The writers' clock: what local time (the time column) and UTC (ECS `@timestamp`) a kernel timestamp
//! (`CLOCK_MONOTONIC`) is, as a function of the timestamp, in steps.
//!
//! `realtime - monotonic` is constant while the machine runs (NTP slews both clocks alike); it moves when the
//! machine resumes from suspend (the monotonic clock stood still), when the clock is stepped, and the local time
//! zone's offset moves at daylight-saving changes. The main loop reads both before each batch
//! ([`LocalClock::update`]); a reading that differs from the current offset by [`STEP_NS`] or more (more than two
//! clock reads one after the other can disagree by) is a step, which applies to every event after the previous
//! reading. Every event printed before a step was received before that reading, so the offset an event gets never
//! changes once it is printed: the steps, recorded ([`cnlink_capture::Clock`]), give a replay exactly the
//! live time column.

use std::cell::RefCell;
use std::rc::Rc;

use cnlink_capture::Clock;

/// How far a reading must move from the current offset to be a step.
pub(crate) const STEP_NS: i128 = 1_000_000;

/// The most steps kept; older ones are forgotten (events before the oldest kept get its offset).
const MAX_STEPS: usize = 4096;

/// The two clocks and the time zone, read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// `CLOCK_MONOTONIC` when read.
    pub(crate) monotonic_ns: u64,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`.
    pub(crate) realtime_minus_monotonic_ns: i64,
    /// The local time zone's offset east of UTC, in seconds.
    pub(crate) utc_offset_s: i32,
}

impl Reading {
    /// The offset from a kernel time to local time this reading gives, in ns.
    fn offset_ns(&self) -> i128 {
        i128::from(self.realtime_minus_monotonic_ns) + i128::from(self.utc_offset_s) * 1_000_000_000
    }
}

/// Reads the clocks: the realtime clock before and after the monotonic one, the pair read closest together of
/// three tries.
pub(crate) fn read() -> Reading {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let mut best: Option<(i128, i128, i128)> = None;
    for _ in 0..3 {
        let r1 = ns(clock_gettime(ClockId::Realtime));
        let m = ns(clock_gettime(ClockId::Monotonic));
        let r2 = ns(clock_gettime(ClockId::Realtime));
        if best.is_none_or(|(a, _, b)| r2 - r1 < b - a) {
            best = Some((r1, m, r2));
        }
    }
    let (r1, m, r2) = best.unwrap_or_default();
    Reading {
        monotonic_ns: m.clamp(0, i128::from(u64::MAX)) as u64,
        realtime_minus_monotonic_ns: ((r1 + r2) / 2 - m).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
        utc_offset_s: chrono::Local::now().offset().local_minus_utc(),
    }
}

/// The offset from kernel times to local time, in steps (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalClock {
    /// By `from_monotonic_ns`, ascending; never empty.
    steps: Vec<Clock>,
    /// `CLOCK_MONOTONIC` of the last reading.
    last_reading_ns: u64,
}

/// The clock the text writer and the main loop share.
pub(crate) type SharedClock = Rc<RefCell<LocalClock>>;

impl LocalClock {
    /// A clock that starts with `r`, for every event.
    pub(crate) fn starting(r: Reading) -> LocalClock {
        let first = Clock {
            from_monotonic_ns: 0,
            realtime_minus_monotonic_ns: r.realtime_minus_monotonic_ns,
            utc_offset_s: r.utc_offset_s,
        };
        LocalClock { steps: vec![first], last_reading_ns: r.monotonic_ns }
    }

    /// A clock of recorded steps (in any order; of two from the same moment, the later one); `None` without any.
    pub(crate) fn recorded(steps: impl IntoIterator<Item = Clock>) -> Option<LocalClock> {
        let mut steps: Vec<Clock> = steps.into_iter().collect();
        steps.reverse();
        // Stable: of steps from the same moment, the one recorded last comes first, and is kept.
        steps.sort_by_key(|c| c.from_monotonic_ns);
        steps.dedup_by_key(|c| c.from_monotonic_ns);
        (!steps.is_empty()).then_some(LocalClock { steps, last_reading_ns: 0 })
    }

    /// A clock that never moves: `offset_ns` from kernel time to UTC, in a time zone `utc_offset_s` east of UTC.
    #[cfg(test)]
    pub(crate) fn fixed(offset_ns: i64, utc_offset_s: i32) -> LocalClock {
        LocalClock::starting(Reading { monotonic_ns: 0, realtime_minus_monotonic_ns: offset_ns, utc_offset_s })
    }

    /// Shared, for the text writer and the main loop.
    pub(crate) fn shared(self) -> SharedClock {
        Rc::new(RefCell::new(self))
    }

    /// Takes a new reading; returns the step it makes, if it moved by [`STEP_NS`] or more. The step applies from
    /// the previous reading on.
    pub(crate) fn update(&mut self, r: Reading) -> Option<Clock> {
        let current = self.steps.last().map_or(0, Clock::local_offset_ns);
        let from = self.last_reading_ns;
        self.last_reading_ns = r.monotonic_ns;
        if (r.offset_ns() - current).abs() < STEP_NS {
            return None;
        }
        let step = Clock {
            from_monotonic_ns: from,
            realtime_minus_monotonic_ns: r.realtime_minus_monotonic_ns,
            utc_offset_s: r.utc_offset_s,
        };
        if self.steps.len() >= MAX_STEPS {
            self.steps.remove(0);
        }
        self.steps.push(step);
        Some(step)
    }

    /// The step that applies to kernel time `ts`.
    fn step_at(&self, ts: u64) -> &Clock {
        let i = self.steps.partition_point(|c| c.from_monotonic_ns <= ts);
        &self.steps[i.saturating_sub(1)]
    }

    /// The offset from kernel time `ts` to local time, in ns.
    pub(crate) fn offset_ns(&self, ts: u64) -> i128 {
        self.step_at(ts).local_offset_ns()
    }

    /// The offset from kernel time `ts` to UTC (`realtime - monotonic`), in ns.
    pub(crate) fn utc_offset_ns(&self, ts: u64) -> i128 {
        i128::from(self.step_at(ts).realtime_minus_monotonic_ns)
    }

    /// The steps, oldest first.
    pub(crate) fn steps(&self) -> &[Clock] {
        &self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn reading(monotonic_ns: u64, offset: i64) -> Reading {
        Reading { monotonic_ns, realtime_minus_monotonic_ns: offset, utc_offset_s: 3600 }
    }

    /// Local second of kernel time `ts`.
    fn second(c: &LocalClock, ts: u64) -> i128 {
        (i128::from(ts) + c.offset_ns(ts)).div_euclid(1_000_000_000)
    }

    #[test]
    fn jitter_is_no_step_and_the_offset_an_event_gets_never_changes_once_printed() {
        // An event 10 ns before a local second boundary, with the offset of the first reading.
        let offset = 1_700_000_000 * S as i64 + 999_999_990;
        let mut live = LocalClock::starting(reading(100 * S, offset));
        let ts = 100 * S;
        assert_eq!(second(&live, ts), 1_700_000_100 + 3600, "10 ns before the next second");
        // Batches later, readings that differ by the jitter of reading two clocks: no step, the same second.
        for (i, jitter) in [40, -25, 900, 120_000].into_iter().enumerate() {
            assert_eq!(live.update(reading(101 * S + i as u64, offset + jitter)), None);
            assert_eq!(second(&live, ts), 1_700_000_100 + 3600);
        }
        // A suspend of 90 s: a step, from the previous reading on.
        let step = live.update(reading(102 * S, offset + 90 * S as i64)).expect("a step");
        assert_eq!(step.from_monotonic_ns, 101 * S + 3);
        assert_eq!(second(&live, ts), 1_700_000_100 + 3600, "an event before the step keeps its offset");
        assert_eq!(second(&live, 101 * S + 10), 1_700_000_191 + 3600 + 1, "an event after it gets the new one");
        // Replay: the clock made of what was recorded (the first reading, then the step) gives every event what
        // the live clock gave it.
        let mut recorded = live.steps().to_vec();
        recorded.rotate_left(1);
        let replay = LocalClock::recorded(recorded).unwrap();
        for t in [0, ts, 101 * S, 101 * S + 3, 101 * S + 4, 500 * S] {
            assert_eq!(replay.offset_ns(t), live.offset_ns(t), "at {t}");
        }
        // A time zone change is a step too.
        let tz = Reading { utc_offset_s: 7200, ..reading(103 * S, offset + 90 * S as i64) };
        assert!(live.update(tz).is_some());
        assert_eq!(live.offset_ns(104 * S) - replay.offset_ns(104 * S), 3600 * 1_000_000_000);
    }

    #[test]
    fn of_steps_recorded_for_the_same_moment_the_last_counts() {
        let c = |from, off| Clock { from_monotonic_ns: from, realtime_minus_monotonic_ns: off, utc_offset_s: 0 };
        let clock = LocalClock::recorded([c(0, 5), c(10, 7), c(0, 5), c(10, 9)]).unwrap();
        assert_eq!(clock.steps(), [c(0, 5), c(10, 9)]);
        assert_eq!((clock.offset_ns(9), clock.offset_ns(10)), (5, 9));
        assert_eq!(LocalClock::recorded([]), None);
    }

    #[test]
    fn readings_are_close_to_the_clocks() {
        let r = read();
        let h = cnlink_capture::HostInfo::collect();
        let host = i128::from(h.monotonic_to_realtime_ns());
        assert!((i128::from(r.realtime_minus_monotonic_ns) - host).abs() < 1_000_000_000);
    }
}
