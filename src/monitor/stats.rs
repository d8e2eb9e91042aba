//! Statistics for `-S`: events by kind and by process name, every loss, and the monitor's own CPU time.

use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use cnlink::wire::EventData;

use super::json::JsonWriter;
use crate::sys::cpu_time;
use cnlink::wire::Escaped;

/// Column names, in order.
pub(crate) const KINDS: [&str; 11] =
    ["fork", "clone", "exec", "exit", "coredump", "comm", "ptrace", "uid", "gid", "sid", "other"];

/// The column of an event kind.
pub(crate) fn kind_index(d: &EventData) -> usize {
    match *d {
        EventData::Fork { child_pid, child_tgid, .. } => usize::from(child_pid != child_tgid),
        EventData::Exec { .. } => 2,
        EventData::Exit { .. } => 3,
        EventData::Coredump { .. } => 4,
        EventData::Comm { .. } => 5,
        EventData::Ptrace { .. } => 6,
        EventData::Uid { .. } => 7,
        EventData::Gid { .. } => 8,
        EventData::Sid { .. } => 9,
        _ => 10,
    }
}

/// The most process names the `-S` table counts separately. Names are chosen by whoever runs a process (any user
/// can rename a process at will), so the table is bounded: later names are counted together as "(other names)".
pub(crate) const NAMES_MAX: usize = 1024;

/// Counters kept while monitoring.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Events received, by kind.
    pub(crate) received: [u64; KINDS.len()],
    /// Events shown, by kind.
    pub(crate) shown: [u64; KINDS.len()],
    /// Events shown, by process name and kind (only when the table is wanted), for at most [`NAMES_MAX`] names.
    pub(crate) by_name: HashMap<Rc<str>, [u64; KINDS.len()]>,
    /// Events shown of processes whose names did not fit in `by_name`.
    pub(crate) other_names: [u64; KINDS.len()],
    pub(crate) per_name: bool,
    /// Lost: from the kernel's per-CPU sequence gaps.
    pub(crate) lost_seq: u64,
    /// Lost: from the socket's kernel drop counter (kernel-filtered subscriptions).
    pub(crate) lost_drops: u64,
    /// Lost: our own queue was full.
    pub(crate) lost_queue: u64,
    /// Loss reports whose count was a lower bound or unknown (while 0, `lost()` is exact).
    pub(crate) lost_inexact: u64,
    /// `ENOBUFS` reports.
    pub(crate) overruns: u64,
    /// Subscription acks seen (ours and other listeners').
    pub(crate) acks: u64,
    /// Events of the monitor's own process (its threads starting and being named), not shown.
    pub(crate) own: u64,
    /// Sequence-gap losses by CPU: a `Lost` record is charged to the CPU of the message after it.
    pub(crate) lost_by_cpu: std::collections::BTreeMap<u32, u64>,
    /// Sequence-gap losses not yet charged to a CPU.
    pub(crate) lost_uncharged: u64,
}

impl Stats {
    pub(crate) fn shown(&mut self, d: &EventData, name: Option<&Rc<str>>) {
        let k = kind_index(d);
        self.shown[k] += 1;
        if self.per_name {
            let name = name.map_or("?", |n| n);
            let full = self.by_name.len() >= NAMES_MAX;
            match self.by_name.get_mut(name) {
                Some(row) => row[k] += 1,
                None if full => self.other_names[k] += 1,
                None => {
                    let mut row = [0; KINDS.len()];
                    row[k] = 1;
                    self.by_name.insert(Rc::from(name), row);
                }
            }
        }
    }

    /// Charges the pending sequence-gap losses to `cpu`, the sender of the message that revealed them.
    pub(crate) fn charge_cpu(&mut self, cpu: u32) {
        if self.lost_uncharged > 0 {
            *self.lost_by_cpu.entry(cpu).or_default() += std::mem::take(&mut self.lost_uncharged);
        }
    }

    pub(crate) fn lost(&self) -> u64 {
        self.lost_seq + self.lost_drops + self.lost_queue
    }
}

/// Everything `-S` prints, gathered at the end.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    pub(crate) stats: &'a Stats,
    pub(crate) elapsed: Duration,
    pub(crate) datagrams: u64,
    pub(crate) malformed: u64,
    pub(crate) rejected: u64,
    pub(crate) kernel_filtered: bool,
    pub(crate) cache_evicted: u64,
    pub(crate) proc_read_failures: u64,
    /// The socket's receive buffer as the kernel granted it (`SO_RCVBUF`), if known.
    pub(crate) rcvbuf: Option<usize>,
}

impl Summary<'_> {
    fn totals(&self) -> (u64, u64) {
        (self.stats.received.iter().sum(), self.stats.shown.iter().sum())
    }

    pub(crate) fn text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let s = self.stats;
        let (received, shown) = self.totals();
        if s.per_name && !s.by_name.is_empty() {
            let used: Vec<usize> = (0..KINDS.len()).filter(|&k| s.shown[k] > 0).collect();
            writeln!(out)?;
            for &k in &used {
                write!(out, "{:>9} ", KINDS[k])?;
            }
            writeln!(out, "{:>9} Process", "total")?;
            let mut rows: Vec<_> = s.by_name.iter().map(|(n, r)| (r.iter().sum::<u64>(), n, r)).collect();
            rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            for (total, name, row) in rows {
                for &k in &used {
                    write!(out, "{:>9} ", row[k])?;
                }
                writeln!(out, "{total:>9} {}", Escaped(name.as_bytes()))?;
            }
            let other: u64 = s.other_names.iter().sum();
            if other > 0 {
                for &k in &used {
                    write!(out, "{:>9} ", s.other_names[k])?;
                }
                writeln!(out, "{other:>9} (other names)")?;
            }
            for &k in &used {
                write!(out, "{:>9} ", s.shown[k])?;
            }
            writeln!(out, "{shown:>9} Total")?;
        }
        let (user, sys) = cpu_time();
        let cpu = user + sys;
        writeln!(
            out,
            "\nevents received {received} ({} datagrams), shown {shown}, in {:.3}s",
            self.datagrams,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            out,
            "lost {}{} (sequence gaps {}, socket drops {}, queue overflow {}), overruns {}{}",
            if s.lost_inexact > 0 { "at least " } else { "" },
            s.lost(),
            s.lost_seq,
            s.lost_drops,
            s.lost_queue,
            s.overruns,
            if self.kernel_filtered { ", kernel-side filter on" } else { "" }
        )?;
        if let Some(b) = self.rcvbuf {
            writeln!(out, "receive buffer {} KiB (as granted by the kernel)", b >> 10)?;
        }
        if self.malformed + self.rejected > 0 {
            writeln!(out, "malformed {}, rejected (not from the kernel) {}", self.malformed, self.rejected)?;
        }
        writeln!(
            out,
            "monitor CPU {:.3}s (user {:.3}s, system {:.3}s), {:.2} µs/event",
            cpu.as_secs_f64(),
            user.as_secs_f64(),
            sys.as_secs_f64(),
            per_event_us(cpu, received)
        )?;
        if self.cache_evicted + self.proc_read_failures > 0 {
            writeln!(out, "cache evictions {}, /proc reads too late {}", self.cache_evicted, self.proc_read_failures)?;
        }
        Ok(())
    }

    pub(crate) fn json(&self, w: &mut JsonWriter) {
        let s = self.stats;
        let (received, shown) = self.totals();
        let (user, sys) = cpu_time();
        w.begin();
        w.str_field("event", "stats");
        w.u64_field("received", received);
        w.u64_field("shown", shown);
        w.u64_field("datagrams", self.datagrams);
        w.u64_field("lost", s.lost());
        w.u64_field("lost_seq_gap", s.lost_seq);
        w.u64_field("lost_socket_drops", s.lost_drops);
        w.u64_field("lost_queue_overflow", s.lost_queue);
        w.u64_field("lost_inexact", s.lost_inexact);
        w.u64_field("overruns", s.overruns);
        w.u64_field("malformed", self.malformed);
        w.u64_field("rejected", self.rejected);
        w.bool_field("kernel_filtered", self.kernel_filtered);
        if let Some(b) = self.rcvbuf {
            w.u64_field("rcvbuf", b as u64);
        }
        w.u64_field("elapsed_ns", self.elapsed.as_nanos() as u64);
        w.u64_field("cpu_user_ns", user.as_nanos() as u64);
        w.u64_field("cpu_system_ns", sys.as_nanos() as u64);
        for (k, name) in KINDS.iter().enumerate() {
            w.u64_field(name, s.shown[k]);
        }
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

    #[test]
    fn counts_by_kind_and_name() {
        let mut s = Stats { per_name: true, ..Default::default() };
        let thread = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 2, child_tgid: 1 };
        let name: Rc<str> = Rc::from("bash");
        s.shown(&thread, Some(&name));
        s.shown(&thread, Some(&name));
        s.shown(&EventData::Exec { process_pid: 1, process_tgid: 1 }, None);
        assert_eq!(s.shown[1], 2);
        assert_eq!(s.by_name["bash"][1], 2);
        assert_eq!(s.by_name["?"][2], 1);
        let sum = Summary {
            stats: &s,
            elapsed: Duration::from_secs(1),
            datagrams: 3,
            malformed: 0,
            rejected: 0,
            kernel_filtered: false,
            cache_evicted: 0,
            proc_read_failures: 0,
            rcvbuf: Some(65536),
        };
        let mut text = Vec::new();
        sum.text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("bash"), "{text}");
        assert!(text.contains("lost 0"), "{text}");
        assert!(cpu_time().0 + cpu_time().1 > Duration::ZERO);
    }

    #[test]
    fn the_name_table_is_bounded_and_escaped() {
        let mut s = Stats { per_name: true, ..Default::default() };
        let exec = EventData::Exec { process_pid: 1, process_tgid: 1 };
        for i in 0..NAMES_MAX + 500 {
            s.shown(&exec, Some(&Rc::from(format!("name-{i}\x1b"))));
        }
        s.shown(&exec, Some(&Rc::from("\x1b]0;evil\x07")));
        assert_eq!(s.by_name.len(), NAMES_MAX);
        assert_eq!(s.other_names[2], 501);
        s.by_name.insert(Rc::from("esc\x1b[2J"), [0; KINDS.len()]);
        let sum = Summary {
            stats: &s,
            elapsed: Duration::from_secs(1),
            datagrams: 0,
            malformed: 0,
            rejected: 0,
            kernel_filtered: false,
            cache_evicted: 0,
            proc_read_failures: 0,
            rcvbuf: Some(65536),
        };
        let mut text = Vec::new();
        sum.text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("501 (other names)"), "{text}");
        assert!(!text.contains('\x1b'), "a raw escape reached the table");
        assert!(text.contains("esc\\x1b[2J"), "{text}");
    }
}
