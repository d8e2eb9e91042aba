//! Human output in forkstat's columns: `Time Event PID [UID EUID TTY] Info Duration [Cgroup] Process`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

use cnlink::proc::{Event, Loss};
use cnlink::wire::{EventData, ExitStatus};

use super::enrich::ProcInfo;
use super::json::{Extra, LostCause};
use super::procfs;
use cnlink::wire::{escape_into, Escaped};

/// How to name a process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NameStyle {
    /// `-c`: the 16-byte comm instead of the command line.
    pub(crate) comm: bool,
    /// `-d`: strip the directory from the program path.
    pub(crate) strip_dir: bool,
    /// `-s`: the program only, without arguments.
    pub(crate) short: bool,
}

/// Columns to show.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Columns {
    /// `-x`: uid, euid and tty.
    pub(crate) extra: bool,
    /// `-g`: a glyph per event.
    pub(crate) glyphs: bool,
    /// `--cgroup`: the cgroup (container) path.
    pub(crate) cgroup: bool,
}

/// Formats events as text lines.
#[derive(Debug)]
pub(crate) struct Human {
    style: NameStyle,
    cols: Columns,
    pid_width: usize,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC` plus the local time zone's offset, in ns, as of the last
    /// [`Human::resync_clock`].
    mono_to_local_ns: i128,
    /// Where that offset comes from.
    clock: fn() -> i128,
    /// User names by uid, looked up through NSS on first use, escaped; bounded by [`USER_CACHE`].
    users: RefCell<HashMap<u32, String>>,
}

/// The most user names remembered.
const USER_CACHE: usize = 4096;

/// `CLOCK_REALTIME - CLOCK_MONOTONIC` plus the local time zone's offset now, in ns: what turns a kernel timestamp
/// into local wall-clock time. It changes when the machine resumes from suspend (the monotonic clock stops), when
/// the clock is stepped, and at daylight-saving changes.
pub(crate) fn local_offset_ns() -> i128 {
    use rustix::time::{clock_gettime, ClockId};
    let ns = |t: rustix::time::Timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
    let real_minus_mono = ns(clock_gettime(ClockId::Realtime)) - ns(clock_gettime(ClockId::Monotonic));
    let tz = chrono::Local::now().offset().local_minus_utc() as i128 * 1_000_000_000;
    real_minus_mono + tz
}

impl Human {
    pub(crate) fn new(style: NameStyle, cols: Columns) -> Self {
        Self::with_clock(style, cols, local_offset_ns)
    }

    /// A formatter whose monotonic-to-local offset comes from `clock` (tests simulate suspends with it).
    pub(crate) fn with_clock(style: NameStyle, cols: Columns, clock: fn() -> i128) -> Self {
        let pid_max =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok());
        Human {
            style,
            cols,
            pid_width: pid_max.map_or(7, |m| m.to_string().len()).max(5),
            mono_to_local_ns: clock(),
            clock,
            users: RefCell::new(HashMap::new()),
        }
    }

    /// Recomputes the offset from kernel timestamps to local time; called once per batch of events.
    pub(crate) fn resync_clock(&mut self) {
        self.mono_to_local_ns = (self.clock)();
    }

    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "Time     {}Event {:>w$} ",
            if self.cols.glyphs { "  " } else { "" },
            "PID",
            w = self.pid_width
        );
        if self.cols.extra {
            let _ = write!(out, "{:>8} {:>8} {:<6} ", "UID", "EUID", "TTY");
        }
        let _ = write!(out, "Info    Duration ");
        if self.cols.cgroup {
            let _ = write!(out, "{:<24} ", "Cgroup");
        }
        let _ = writeln!(out, "Process");
    }

    fn time(&self, out: &mut Vec<u8>, ts: u64) {
        let local = (ts as i128 + self.mono_to_local_ns).max(0) / 1_000_000_000;
        let day = (local % 86_400) as u32;
        let _ = write!(out, "{:02}:{:02}:{:02} ", day / 3600, day / 60 % 60, day % 60);
    }

    fn user(&self, uid: Option<u32>) -> String {
        let Some(uid) = uid else { return "?".into() };
        let mut users = self.users.borrow_mut();
        if users.len() >= USER_CACHE && !users.contains_key(&uid) {
            users.clear();
        }
        users
            .entry(uid)
            .or_insert_with(|| match crate::sys::user_name(uid) {
                Some(name) => Escaped(&name).to_string(),
                None => uid.to_string(),
            })
            .clone()
    }

    /// One line up to the Info column.
    fn lead(&self, out: &mut Vec<u8>, ts: u64, glyph: &str, name: &str, pid: i32, info: Option<&ProcInfo>) {
        self.time(out, ts);
        if self.cols.glyphs {
            let _ = write!(out, "{glyph} ");
        }
        let _ = write!(out, "{name:<5} {pid:>w$} ", w = self.pid_width);
        if self.cols.extra {
            let tty = info.map_or_else(|| "?".into(), |i| procfs::tty_name(i.tty));
            let _ = write!(
                out,
                "{:>8} {:>8} {tty:<6} ",
                self.user(info.and_then(|i| i.uid)),
                self.user(info.and_then(|i| i.euid))
            );
        }
    }

    /// Info, duration, cgroup and process name, then the newline.
    fn tail(&self, out: &mut Vec<u8>, info_col: &str, lifetime: Option<u64>, info: Option<&ProcInfo>, suffix: &str) {
        let dur = lifetime.map(|l| format!("{:.3}s", l as f64 / 1e9)).unwrap_or_default();
        let _ = write!(out, "{info_col:<7} {dur:>8} ");
        if self.cols.cgroup {
            let cg = info.map_or("", |i| &i.cgroup);
            let _ = write!(out, "{:<24} ", Escaped(cg.as_bytes()));
        }
        self.name(out, info);
        let _ = writeln!(out, "{suffix}");
    }

    /// The process name as the options ask.
    pub(crate) fn name(&self, out: &mut Vec<u8>, info: Option<&ProcInfo>) {
        let Some(i) = info else {
            out.extend_from_slice(b"<unknown>");
            return;
        };
        if i.kthread {
            out.push(b'[');
            escape_into(out, i.comm.as_bytes());
            out.push(b']');
            return;
        }
        if i.comm.is_empty() && i.cmdline.is_empty() {
            out.extend_from_slice(b"<unknown>");
            return;
        }
        if self.style.comm || i.cmdline.is_empty() {
            escape_into(out, i.comm.as_bytes());
            return;
        }
        let (prog, args) = i.cmdline.split_once(' ').unwrap_or((&i.cmdline, ""));
        let prog = if self.style.strip_dir { prog.rsplit('/').next().unwrap_or(prog) } else { prog };
        escape_into(out, prog.as_bytes());
        if !self.style.short && !args.is_empty() {
            out.push(b' ');
            escape_into(out, args.as_bytes());
        }
    }

    /// Writes the line(s) of one event. `parent` is the parent's entry for forks.
    pub(crate) fn event(&self, out: &mut Vec<u8>, ev: &Event, x: Extra<'_>, parent: Option<&ProcInfo>) {
        let ts = ev.timestamp_ns;
        let info = x.info;
        match ev.data {
            EventData::Fork { parent_tgid, child_pid, child_tgid, .. } => {
                // A thread's kernel "parent" is its process's parent; the creator is the process itself.
                let thread = child_pid != child_tgid;
                let (kind, creator, parent) =
                    if thread { ("clone", child_tgid, info) } else { ("fork", parent_tgid, parent) };
                self.lead(out, ts, "┬", kind, creator, parent);
                self.tail(out, "parent", None, parent, "");
                self.lead(out, ts, "└", kind, child_pid, info);
                self.tail(out, if thread { "thread" } else { "child" }, None, info, "");
            }
            EventData::Exec { process_pid, .. } => {
                self.lead(out, ts, "→", "exec", process_pid, info);
                self.tail(out, "", None, info, "");
            }
            EventData::Exit { process_pid, exit_code, .. } => {
                self.lead(out, ts, "⇥", "exit", process_pid, info);
                let code = match ExitStatus::from_raw(exit_code) {
                    ExitStatus::Exited(c) => c.to_string(),
                    ExitStatus::Signaled { signal, core_dumped } => {
                        format!("{}{}", signal_name(signal), if core_dumped { "*" } else { "" })
                    }
                    ExitStatus::Other(s) => format!("{s:#x}"),
                };
                self.tail(out, &code, x.lifetime_ns, info, "");
            }
            EventData::Coredump { process_pid, .. } => {
                self.lead(out, ts, "☠", "core", process_pid, info);
                self.tail(out, "", None, info, "");
            }
            EventData::Comm { process_pid, comm, .. } => {
                self.lead(out, ts, "↻", "comm", process_pid, info);
                // The raw bytes, escaped: a comm need not be UTF-8.
                let new = comm.split(|&b| b == 0).next().unwrap_or_default();
                let old = x.old_comm.unwrap_or("?");
                let suffix = format!(" (comm {} -> {})", Escaped(old.as_bytes()), Escaped(new));
                self.tail(out, "", None, info, &suffix);
            }
            EventData::Ptrace { process_pid, tracer_tgid, .. } => {
                self.lead(out, ts, "⋯", "ptrce", process_pid, info);
                let (what, by) = if tracer_tgid == 0 {
                    ("detach", String::new())
                } else {
                    ("attach", format!(" (traced by {tracer_tgid})"))
                };
                self.tail(out, what, None, info, &by);
            }
            EventData::Uid { process_pid, ruid, euid, .. } => {
                self.lead(out, ts, "≈", "uid", process_pid, info);
                let old = x.old_uid.map_or_else(|| "?".into(), |u| u.to_string());
                self.tail(out, "", None, info, &format!(" (uid {old} -> {ruid}, euid {euid})"));
            }
            EventData::Gid { process_pid, rgid, egid, .. } => {
                self.lead(out, ts, "≈", "gid", process_pid, info);
                self.tail(out, "", None, info, &format!(" (gid {rgid}, egid {egid})"));
            }
            EventData::Sid { process_pid, .. } => {
                self.lead(out, ts, "≈", "sid", process_pid, info);
                self.tail(out, "", None, info, " (new session)");
            }
            _ => {
                self.lead(out, ts, "?", "?????", 0, None);
                let _ = writeln!(out, "unknown event {:#x}", ev.data.what());
            }
        }
    }

    /// A loss, never silent: `N events lost`, `at least N events lost`, or `? events lost` when the count is
    /// unknown.
    pub(crate) fn lost(&self, out: &mut Vec<u8>, loss: Loss, cause: LostCause, now_ns: u64) {
        self.time(out, now_ns);
        if self.cols.glyphs {
            out.extend_from_slice("! ".as_bytes());
        }
        let _ = write!(out, "{:<5} {:>w$} ", "lost", "-", w = self.pid_width);
        let _ = match loss {
            Loss::Exact(n) => write!(out, "{n}"),
            Loss::AtLeast(n) => write!(out, "at least {n}"),
            Loss::Unknown => write!(out, "?"),
        };
        let _ = writeln!(out, " events lost ({})", cause.name());
    }
}

/// The signal's name from this platform's numbering (`libc::SIG*`), else `SIG<n>` (real-time signals included).
pub(crate) fn signal_name(sig: u8) -> String {
    const NAMES: &[(libc::c_int, &str)] = &[
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCHLD, "SIGCHLD"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGSTOP, "SIGSTOP"),
        (libc::SIGTSTP, "SIGTSTP"),
        (libc::SIGTTIN, "SIGTTIN"),
        (libc::SIGTTOU, "SIGTTOU"),
        (libc::SIGURG, "SIGURG"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPWR, "SIGPWR"),
        (libc::SIGSYS, "SIGSYS"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == libc::c_int::from(sig))
        .map_or_else(|| format!("SIG{sig}"), |(_, name)| (*name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(h: &Human, data: EventData, x: Extra<'_>) -> String {
        let mut out = Vec::new();
        h.event(&mut out, &Event { seq: 0, cpu: 0, timestamp_ns: 1_000_000_000, data }, x, None);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exit_line_has_code_lifetime_and_name() {
        let h = Human::new(NameStyle::default(), Columns::default());
        let info = ProcInfo { comm: "sh".into(), cmdline: "/bin/sh -c exit 3".into(), ..Default::default() };
        let data = EventData::Exit {
            process_pid: 42,
            process_tgid: 42,
            exit_code: 768,
            exit_signal: 17,
            parent_pid: 1,
            parent_tgid: 1,
        };
        let l = line(&h, data, Extra { info: Some(&info), lifetime_ns: Some(1_500_000_000), ..Default::default() });
        assert!(l.contains(" exit "), "{l}");
        assert!(l.contains(" 42 "), "{l}");
        assert!(l.contains("3 "), "{l}");
        assert!(l.contains("1.500s"), "{l}");
        assert!(l.trim_end().ends_with("/bin/sh -c exit 3"), "{l}");
    }

    #[test]
    fn names_follow_the_style() {
        let info = ProcInfo { comm: "ls".into(), cmdline: "/usr/bin/ls -l".into(), ..Default::default() };
        let name = |style| {
            let mut v = Vec::new();
            Human::new(style, Columns::default()).name(&mut v, Some(&info));
            String::from_utf8(v).unwrap()
        };
        assert_eq!(name(NameStyle::default()), "/usr/bin/ls -l");
        assert_eq!(name(NameStyle { comm: true, ..Default::default() }), "ls");
        assert_eq!(name(NameStyle { strip_dir: true, ..Default::default() }), "ls -l");
        assert_eq!(name(NameStyle { short: true, ..Default::default() }), "/usr/bin/ls");
        let k = ProcInfo { comm: "kworker/0:1".into(), kthread: true, ..Default::default() };
        let mut v = Vec::new();
        Human::new(NameStyle::default(), Columns::default()).name(&mut v, Some(&k));
        assert_eq!(v, b"[kworker/0:1]");
    }

    #[test]
    fn fork_prints_parent_and_child_lines() {
        let h = Human::new(NameStyle::default(), Columns::default());
        let data = EventData::Fork { parent_pid: 10, parent_tgid: 10, child_pid: 11, child_tgid: 10 };
        let l = line(&h, data, Extra::default());
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("clone") && lines[0].contains("parent"));
        assert!(lines[1].contains("thread") && lines[1].contains(" 11 "));
        assert_eq!(signal_name(libc::SIGKILL as u8), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTERM as u8), "SIGTERM");
        assert_eq!(signal_name(libc::SIGCHLD as u8), "SIGCHLD");
        assert_eq!(signal_name(64), "SIG64");
    }
}
