//! Reading the host's identity and clocks for the [`HostInfo`] record, and turning a proc event's kernel time
//! into the packet timestamp.

use rustix::time::{clock_gettime, ClockId};

use crate::record::{HostInfo, DATAGRAMS_BIG_ENDIAN, DATAGRAMS_LITTLE_ENDIAN};

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn nanos(clock: ClockId) -> i128 {
    let t = clock_gettime(clock);
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// How many CPUs a kernel CPU list (`0-3,6`) names; 0 if it does not parse.
pub fn cpu_list_len(list: &str) -> u32 {
    let mut n = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
            (Ok(a), Ok(b)) if b >= a => n = n.saturating_add(b - a + 1),
            _ => return 0,
        }
    }
    n
}

impl HostInfo {
    /// Reads this machine's identity (`/etc/machine-id`, boot id, `uname`, CPU lists) and its three clocks, read
    /// back to back. Anything unreadable is left empty (or 0).
    pub fn collect() -> HostInfo {
        let realtime = nanos(ClockId::Realtime);
        let monotonic = nanos(ClockId::Monotonic);
        let boottime = nanos(ClockId::Boottime);
        let uname = rustix::system::uname();
        let text = |c: &core::ffi::CStr| c.to_string_lossy().into_owned();
        let possible = read_trimmed("/sys/devices/system/cpu/possible");
        let cpu_count = match cpu_list_len(&possible) {
            0 => std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
            n => n,
        };
        HostInfo {
            realtime_ns: realtime.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            monotonic_ns: monotonic.clamp(0, i128::from(u64::MAX)) as u64,
            boottime_ns: boottime.clamp(0, i128::from(u64::MAX)) as u64,
            cpu_count,
            byte_order: if cfg!(target_endian = "big") { DATAGRAMS_BIG_ENDIAN } else { DATAGRAMS_LITTLE_ENDIAN },
            host_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kernel_release: text(uname.release()),
            online_cpus: read_trimmed("/sys/devices/system/cpu/online"),
            hostname: text(uname.nodename()),
            machine: text(uname.machine()),
        }
    }
}

/// A proc connector datagram's `timestamp_ns` (`CLOCK_MONOTONIC`): the first message's, when the datagram is
/// from `{CN_IDX_PROC, CN_VAL_PROC}` and holds a whole event header.
pub fn proc_event_timestamp(datagram: &[u8]) -> Option<u64> {
    use cnlink::wire::{CbId, CnMsg, NlMessages, ProcEvent};
    let nl = NlMessages::new(datagram).next()?.ok()?;
    let cn = CnMsg::new_checked(nl.payload()).ok()?;
    if cn.id() != CbId::PROC {
        return None;
    }
    ProcEvent::parse(cn.data()).ok().map(|ev| ev.timestamp_ns)
}

/// `monotonic_ns + offset`, saturating: a `CLOCK_MONOTONIC` time as wall clock, with `offset` from
/// [`HostInfo::monotonic_to_realtime_ns`].
pub fn monotonic_to_wall(monotonic_ns: u64, offset: i64) -> u64 {
    (i128::from(monotonic_ns) + i128::from(offset)).clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_len("0-3"), 4);
        assert_eq!(cpu_list_len("0-3,6,8-9\n"), 7);
        assert_eq!(cpu_list_len("0"), 1);
        assert_eq!(cpu_list_len(""), 0);
        assert_eq!(cpu_list_len("3-1"), 0);
        assert_eq!(cpu_list_len("x"), 0);
    }

    #[test]
    fn collects_this_host() {
        let h = HostInfo::collect();
        assert!(h.cpu_count >= 1);
        assert!(!h.kernel_release.is_empty());
        assert!(h.realtime_ns > 1_600_000_000_000_000_000, "after 2020");
        let offset = h.monotonic_to_realtime_ns();
        assert!((monotonic_to_wall(h.monotonic_ns, offset) as i64 - h.realtime_ns).abs() < 1_000_000_000);
    }

    #[test]
    fn wall_clock_saturates() {
        assert_eq!(monotonic_to_wall(5, -10), 0);
        assert_eq!(monotonic_to_wall(u64::MAX, 10), u64::MAX);
        assert_eq!(monotonic_to_wall(5, 10), 15);
    }
}
