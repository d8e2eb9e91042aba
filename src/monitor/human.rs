//! Human output in forkstat's columns: `Time Event PID [UID EUID TTY] Info Duration [Cgroup] Process`.
//!
//! Everything printed comes from the record or from [`TextEnv`], the writer's inputs from the machine (the
//! clock offset for the time column, the pid column's width, user names): live they are read from this
//! machine, a replay sets them from the recording.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;

use cnlink::wire::{escape_into, EventData, ExitStatus};
use cnlink_procmon::{EntryLeaderKind, LostEvents, ProcRecord, ProcessInfo};

use super::clock::SharedClock;
use super::tty;

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
    /// `-x`: uid, euid and tty, and the entry leader on exec lines.
    pub(crate) extra: bool,
    /// `-g`: a glyph per event.
    pub(crate) glyphs: bool,
    /// `--cgroup`: the cgroup (container) path.
    pub(crate) cgroup: bool,
}

/// What the writers take from the machine (text, the tree view, and the ECS output's clock).
pub(crate) struct TextEnv {
    /// The pid column's width.
    pub(crate) pid_width: usize,
    /// The clock of the time column and of ECS's `@timestamp` (the main loop moves it, or a replay's
    /// recording fixes it).
    pub(crate) clock: SharedClock,
    /// A user's name by uid.
    pub(crate) user_name: Box<dyn Fn(u32) -> Option<Vec<u8>>>,
}

impl std::fmt::Debug for TextEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEnv").field("pid_width", &self.pid_width).field("clock", &self.clock.borrow()).finish()
    }
}

impl TextEnv {
    /// This machine: the pid column as wide as `pid_max`, `clock`, user names through NSS.
    pub(crate) fn live(clock: SharedClock) -> TextEnv {
        let pid_max =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok());
        TextEnv {
            pid_width: pid_max.map_or(7, |m| m.to_string().len()).max(5),
            clock,
            user_name: Box::new(crate::sys::user_name),
        }
    }
}

/// Formats records as text lines.
#[derive(Debug)]
pub(crate) struct Human {
    style: NameStyle,
    cols: Columns,
    env: TextEnv,
    /// User names by uid, escaped; bounded by [`USER_CACHE`].
    users: RefCell<HashMap<u32, String>>,
}

/// The most user names remembered.
const USER_CACHE: usize = 4096;

impl Human {
    pub(crate) fn new(style: NameStyle, cols: Columns, env: TextEnv) -> Self {
        Human { style, cols, env, users: RefCell::new(HashMap::new()) }
    }

    pub(crate) fn header(&self, out: &mut Vec<u8>) {
        self.header_named(out, "Process");
    }

    /// The header line, with `last` over the name column.
    pub(crate) fn header_named(&self, out: &mut Vec<u8>, last: &str) {
        let _ = write!(
            out,
            "Time     {}Event {:>w$} ",
            if self.cols.glyphs { "  " } else { "" },
            "PID",
            w = self.env.pid_width
        );
        if self.cols.extra {
            let _ = write!(out, "{:>8} {:>8} {:<6} ", "UID", "EUID", "TTY");
        }
        let _ = write!(out, "Info    Duration ");
        if self.cols.cgroup {
            let _ = write!(out, "{:<24} ", "Cgroup");
        }
        let _ = writeln!(out, "{last}");
    }

    /// The time column.
    pub(crate) fn time(&self, out: &mut Vec<u8>, ts: u64) {
        let local = (ts as i128 + self.env.clock.borrow().offset_ns(ts)).max(0) / 1_000_000_000;
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
            .or_insert_with(|| match (self.env.user_name)(uid) {
                Some(name) => cnlink::wire::Escaped(&name).to_string(),
                None => uid.to_string(),
            })
            .clone()
    }

    /// One line up to the Info column.
    pub(crate) fn lead(
        &self,
        out: &mut Vec<u8>,
        ts: u64,
        glyph: &str,
        name: &str,
        pid: i32,
        info: Option<&ProcessInfo>,
    ) {
        self.time(out, ts);
        if self.cols.glyphs {
            let _ = write!(out, "{glyph} ");
        }
        let _ = write!(out, "{name:<5} {pid:>w$} ", w = self.env.pid_width);
        if self.cols.extra {
            let tty = info.map_or_else(|| "?".into(), |i| tty::name(i.tty_nr as u32));
            let _ = write!(
                out,
                "{:>8} {:>8} {tty:<6} ",
                self.user(info.and_then(|i| i.creds.ruid)),
                self.user(info.and_then(|i| i.creds.euid))
            );
        }
    }

    /// Info, duration, cgroup and process name, then the suffix and the newline.
    fn tail(&self, out: &mut Vec<u8>, info_col: &str, lifetime: Option<u64>, info: Option<&ProcessInfo>, suffix: &str) {
        self.middle(out, info_col, lifetime, info);
        self.name(out, info);
        let _ = writeln!(out, "{suffix}");
    }

    /// The Info, Duration and Cgroup columns.
    pub(crate) fn middle(&self, out: &mut Vec<u8>, info_col: &str, lifetime: Option<u64>, info: Option<&ProcessInfo>) {
        let dur = lifetime.map(|l| format!("{:.3}s", l as f64 / 1e9)).unwrap_or_default();
        let _ = write!(out, "{info_col:<7} {dur:>8} ");
        if self.cols.cgroup {
            let cg = info.and_then(|i| i.cgroup.as_ref()).map_or(&[][..], |c| c.path.as_bytes());
            let _ = write!(out, "{:<24} ", cnlink::wire::Escaped(cg));
        }
    }

    /// The process name as the options ask: the command line (argv, escaped), or the comm.
    pub(crate) fn name(&self, out: &mut Vec<u8>, info: Option<&ProcessInfo>) {
        let Some(i) = info else {
            out.extend_from_slice(b"<unknown>");
            return;
        };
        let comm = i.program.name.as_bytes();
        if i.kthread {
            out.push(b'[');
            escape_into(out, comm);
            out.push(b']');
            return;
        }
        let argv = i.program.argv.as_ref().filter(|a| a.count > 0);
        let Some(argv) = argv.filter(|_| !self.style.comm) else {
            if comm.is_empty() {
                out.extend_from_slice(b"<unknown>");
            } else {
                escape_into(out, comm);
            }
            return;
        };
        let mut args = argv.args();
        let prog = args.next().unwrap_or_default();
        let prog = if self.style.strip_dir { prog.rsplit(|&b| b == b'/').next().unwrap_or(prog) } else { prog };
        escape_into(out, prog);
        if !self.style.short {
            for a in args {
                out.push(b' ');
                escape_into(out, a);
            }
        }
    }

    /// Writes the line(s) of one record.
    pub(crate) fn record(&self, out: &mut Vec<u8>, rec: &ProcRecord) {
        let ev = &rec.event;
        let ts = ev.timestamp_ns;
        let info = rec.process.as_deref();
        match ev.data {
            EventData::Fork { parent_tgid, child_pid, child_tgid, .. } => {
                // A thread's kernel "parent" is its process's parent; the creator is the process itself.
                let thread = child_pid != child_tgid;
                let (kind, creator, parent) =
                    if thread { ("clone", child_tgid, info) } else { ("fork", parent_tgid, rec.parent.as_deref()) };
                self.lead(out, ts, "┬", kind, creator, parent);
                self.tail(out, "parent", None, parent, "");
                self.lead(out, ts, "└", kind, child_pid, info);
                self.tail(out, if thread { "thread" } else { "child" }, None, info, "");
            }
            EventData::Exec { process_pid, .. } => {
                self.lead(out, ts, "→", "exec", process_pid, info);
                let suffix = match (self.cols.extra, rec.entry_leader()) {
                    (true, Some(l)) if l.kind != EntryLeaderKind::Unknown || l.pid != process_pid => {
                        let mut s = format!(" (entry {}: ", l.kind.name());
                        s.push_str(&cnlink::wire::Escaped(l.name.as_bytes()).to_string());
                        s.push_str(&format!("[{}])", l.pid));
                        s
                    }
                    _ => String::new(),
                };
                self.tail(out, "", None, info, &suffix);
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
                self.tail(out, &code, rec.lifetime_ns, info, "");
            }
            EventData::Coredump { process_pid, .. } => {
                self.lead(out, ts, "☠", "core", process_pid, info);
                self.tail(out, "", None, info, "");
            }
            EventData::Comm { process_pid, process_tgid, comm } => {
                self.lead(out, ts, "↻", "comm", process_pid, info);
                // The raw bytes, escaped: a comm need not be UTF-8.
                let new = comm.split(|&b| b == 0).next().unwrap_or_default();
                let before = if process_pid == process_tgid { rec.previous.as_deref() } else { info };
                let old = before.map(|p| p.program.name.as_bytes()).filter(|n| !n.is_empty()).unwrap_or(b"?");
                let suffix = format!(" (comm {} -> {})", cnlink::wire::Escaped(old), cnlink::wire::Escaped(new));
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
                let old = rec.previous.as_ref().and_then(|p| p.creds.ruid);
                let old = old.map_or_else(|| "?".into(), |u| u.to_string());
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
    pub(crate) fn lost(&self, out: &mut Vec<u8>, l: &LostEvents) {
        self.time(out, l.timestamp_ns);
        if self.cols.glyphs {
            out.extend_from_slice("! ".as_bytes());
        }
        let _ = write!(out, "{:<5} {:>w$} ", "lost", "-", w = self.env.pid_width);
        let _ = match (l.count, l.exact) {
            (Some(n), true) => write!(out, "{n}"),
            (Some(n), false) => write!(out, "at least {n}"),
            (None, _) => write!(out, "?"),
        };
        let _ = writeln!(out, " events lost ({})", l.cause.name());
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
mod tests;
