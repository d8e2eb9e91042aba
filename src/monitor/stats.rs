//! Statistics for `-S`: events by kind (the monitor's counters) and by process name, every loss, the process
//! table, and the monitor's own CPU time.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use cnlink::wire::Escaped;
use cnlink_procmon::{BStr, EventKind, MonitorCounters};

use super::json::JsonWriter;
use crate::sys::cpu_time;

/// The most process names the `-S` table counts separately. Names are chosen by whoever runs a process (any user
/// can rename a process at will), so the table is bounded: later names are counted together as "(other names)".
pub(crate) const NAMES_MAX: usize = 1024;

/// Events shown, by process name and kind.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// For at most [`NAMES_MAX`] names.
    pub(crate) by_name: HashMap<BStr, [u64; EventKind::COUNT]>,
    /// Events shown of processes whose names did not fit in `by_name`.
    pub(crate) other: [u64; EventKind::COUNT],
}

impl Names {
    /// Counts one event shown of a process named `name` (`?` when unknown).
    pub(crate) fn count(&mut self, kind: EventKind, name: Option<&BStr>) {
        let k = kind.index();
        let unknown = BStr::from("?");
        let name = name.filter(|n| !n.is_empty()).unwrap_or(&unknown);
        let full = self.by_name.len() >= NAMES_MAX;
        match self.by_name.get_mut(name) {
            Some(row) => row[k] += 1,
            None if full => self.other[k] += 1,
            None => {
                let mut row = [0; EventKind::COUNT];
                row[k] = 1;
                self.by_name.insert(name.clone(), row);
            }
        }
    }
}

/// Everything `-S` prints, gathered at the end.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    pub(crate) counters: &'a MonitorCounters,
    /// The per-name table, when it was kept (text output).
    pub(crate) names: Option<&'a Names>,
    pub(crate) elapsed: Duration,
    pub(crate) kernel_filtered: bool,
    /// The socket's receive buffer as the kernel granted it (`SO_RCVBUF`), if known.
    pub(crate) rcvbuf: Option<usize>,
}

impl Summary<'_> {
    fn totals(&self) -> (u64, u64) {
        (self.counters.received.iter().sum(), self.counters.shown.iter().sum())
    }

    pub(crate) fn text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let c = self.counters;
        let (received, shown) = self.totals();
        if let Some(names) = self.names.filter(|n| !n.by_name.is_empty()) {
            let used: Vec<usize> = (0..EventKind::COUNT).filter(|&k| c.shown[k] > 0).collect();
            writeln!(out)?;
            for &k in &used {
                write!(out, "{:>9} ", EventKind::ALL[k].name())?;
            }
            writeln!(out, "{:>9} Process", "total")?;
            let mut rows: Vec<_> = names.by_name.iter().map(|(n, r)| (r.iter().sum::<u64>(), n, r)).collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            for (total, name, row) in rows {
                for &k in &used {
                    write!(out, "{:>9} ", row[k])?;
                }
                writeln!(out, "{total:>9} {}", Escaped(name.as_bytes()))?;
            }
            let other: u64 = names.other.iter().sum();
            if other > 0 {
                for &k in &used {
                    write!(out, "{:>9} ", names.other[k])?;
                }
                writeln!(out, "{other:>9} (other names)")?;
            }
            for &k in &used {
                write!(out, "{:>9} ", c.shown[k])?;
            }
            writeln!(out, "{shown:>9} Total")?;
        }
        let (user, sys) = cpu_time();
        let cpu = user + sys;
        let l = &c.losses;
        writeln!(
            out,
            "\nevents received {received} ({} datagrams), shown {shown}, in {:.3}s",
            c.source.datagrams,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            out,
            "lost {}{} (sequence gaps {}, socket drops {}, queue overflow {}), overruns {}{}",
            if l.inexact > 0 { "at least " } else { "" },
            l.total(),
            l.seq_gap,
            l.socket_drops,
            l.queue,
            c.overruns,
            if self.kernel_filtered { ", kernel-side filter on" } else { "" }
        )?;
        if let Some(b) = self.rcvbuf {
            writeln!(out, "receive buffer {} KiB (as granted by the kernel)", b >> 10)?;
        }
        if c.source.malformed + c.source.rejected > 0 {
            writeln!(out, "malformed {}, rejected (not from the kernel) {}", c.source.malformed, c.source.rejected)?;
        }
        writeln!(
            out,
            "monitor CPU {:.3}s (user {:.3}s, system {:.3}s), {:.2} µs/event",
            cpu.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
            per_event_us(cpu, received)
        )?;
        let t = &c.table;
        writeln!(
            out,
            "process table {} live, {} exited kept, {} threads; evictions {}, /proc reads too late {}",
            t.live, t.exited, t.threads, t.evicted, t.gone
        )?;
        let p = &c.prefetch;
        if p.read + p.stale + p.over_budget + p.over_memory > 0 {
            writeln!(
                out,
                "read at once {} ({} already gone, {:.1} ms), left to the table: {} late, {} over budget, {} over \
                 memory",
                p.read,
                p.gone,
                p.time_ns as f64 / 1e6,
                p.stale,
                p.over_budget,
                p.over_memory
            )?;
        }
        Ok(())
    }

    pub(crate) fn json(&self, w: &mut JsonWriter) {
        let c = self.counters;
        let l = &c.losses;
        let (received, shown) = self.totals();
        let (user, sys) = cpu_time();
        w.begin();
        w.str_field("event", "stats");
        w.u64_field("received", received);
        w.u64_field("shown", shown);
        w.u64_field("datagrams", c.source.datagrams);
        w.u64_field("lost", l.total());
        w.u64_field("lost_seq_gap", l.seq_gap);
        w.u64_field("lost_socket_drops", l.socket_drops);
        w.u64_field("lost_queue_overflow", l.queue);
        w.u64_field("lost_inexact", l.inexact);
        w.u64_field("overruns", c.overruns);
        w.u64_field("malformed", c.source.malformed);
        w.u64_field("rejected", c.source.rejected);
        w.bool_field("kernel_filtered", self.kernel_filtered);
        if let Some(b) = self.rcvbuf {
            w.u64_field("rcvbuf", b as u64);
        }
        w.u64_field("elapsed_ns", self.elapsed.as_nanos() as u64);
        w.u64_field("cpu_user_ns", user.as_nanos() as u64);
        w.u64_field("cpu_system_ns", sys.as_nanos() as u64);
        for k in EventKind::ALL {
            w.u64_field(k.name(), c.shown[k.index()]);
        }
        w.u64_field("table_live", c.table.live as u64);
        w.u64_field("table_evicted", c.table.evicted);
        w.u64_field("proc_gone", c.table.gone);
        w.u64_field("prefetch_read", c.prefetch.read);
        w.u64_field("prefetch_gone", c.prefetch.gone);
        w.u64_field("prefetch_deferred", c.prefetch.stale + c.prefetch.over_budget + c.prefetch.over_memory);
        w.end();
    }
}

fn per_event_us(cpu: Duration, events: u64) -> f64 {
    if events == 0 {
        0.0
    } else {
        cpu.as_secs_f64() * 1e6 / events as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary<'a>(c: &'a MonitorCounters, names: &'a Names) -> Summary<'a> {
        Summary {
            counters: c,
            names: Some(names),
            elapsed: Duration::from_secs(1),
            kernel_filtered: false,
            rcvbuf: Some(65536),
        }
    }

    #[test]
    fn counts_by_kind_and_name() {
        let mut n = Names::default();
        let bash = BStr::from("bash");
        n.count(EventKind::Clone, Some(&bash));
        n.count(EventKind::Clone, Some(&bash));
        n.count(EventKind::Exec, None);
        assert_eq!(n.by_name[&bash][1], 2);
        assert_eq!(n.by_name[&BStr::from("?")][2], 1);
        let mut c = MonitorCounters::default();
        c.shown[1] = 2;
        c.shown[2] = 1;
        c.source.datagrams = 3;
        let mut text = Vec::new();
        summary(&c, &n).text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("bash"), "{text}");
        assert!(text.contains("lost 0"), "{text}");
        assert!(cpu_time().0 + cpu_time().1 > Duration::ZERO);
    }

    #[test]
    fn the_name_table_is_bounded_and_escaped() {
        let mut n = Names::default();
        for i in 0..NAMES_MAX + 500 {
            n.count(EventKind::Exec, Some(&BStr::from(format!("name-{i}\x1b").as_str())));
        }
        n.count(EventKind::Exec, Some(&BStr::from("\x1b]0;evil\x07")));
        assert_eq!(n.by_name.len(), NAMES_MAX);
        assert_eq!(n.other[2], 501);
        n.by_name.insert(BStr::from("esc\x1b[2J"), [0; EventKind::COUNT]);
        let mut c = MonitorCounters::default();
        c.shown[2] = 1;
        let mut text = Vec::new();
        summary(&c, &n).text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("501 (other names)"), "{text}");
        assert!(!text.contains('\x1b'), "a raw escape reached the table");
        assert!(text.contains("esc\\x1b[2J"), "{text}");
    }

    #[test]
    fn losses_say_whether_they_are_exact() {
        let n = Names::default();
        let mut c = MonitorCounters::default();
        c.losses.seq_gap = 4;
        c.losses.inexact = 1;
        let mut text = Vec::new();
        summary(&c, &n).text(&mut text).unwrap();
        assert!(String::from_utf8(text).unwrap().contains("lost at least 4 (sequence gaps 4,"));
        let mut w = JsonWriter::new();
        summary(&c, &n).json(&mut w);
        let v: serde_json::Value = serde_json::from_slice(w.bytes()).unwrap();
        assert_eq!((v["lost"].as_u64(), v["lost_inexact"].as_u64()), (Some(4), Some(1)));
    }
}
