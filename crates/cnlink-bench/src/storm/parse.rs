//! One line parser per listener: each turns a line of the listener's output into a [`Line`].
//!
//! Formats:
//! - `cnlink proc --format json` (JSON Lines, docs/json.md), and the records `cnlink collect` reads back after
//!   `cnlink proc --sink` (the same objects with `host_id`, `boot_id`, `sink_seq` in front; ledger and audit
//!   records have no `event`): `{"event":"fork", "child_pid":..,
//!   "child_tgid":.., "parent_pid":.., "parent_tgid":..}`, `{"event":"exit", "pid":.., "tgid":..,
//!   "parent_tgid":..}` (`process_pid`/`process_tgid` are accepted too), `{"event":"lost",
//!   "count":N}`, `{"event":"overrun"}`; any other `event` is another kind of event.
//! - the library example (`Display` of `cnlink::wire::ProcEvent`): `fork cpu=1 timestamp_ns=..
//!   parent_pid=10 parent_tgid=10 child_pid=12 child_tgid=12`, `exit cpu=0 .. process_pid=12
//!   process_tgid=12 exit_code=0 (exit 0) exit_signal=17 parent_pid=.. parent_tgid=..`,
//!   `lost count=N`, `overrun`.
//! - `bench/c/cloop.c`: `fork PPID PTGID PID TGID`, `exit PID TGID CODE PPID PTGID`,
//!   `ev WHAT PID TGID`, `enobufs`.
//! - `forkstat -e fork,clone,exit`: `TIME fork|clone PID parent|child|thread ..`, `TIME exit PID CODE ..`;
//!   a fork event is two lines (parent, then child), counted once, on the child line;
//!   `TIME recv ----- nobufs ..` reports an ENOBUFS.

use serde_json::Value;

/// Which program printed the lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub(crate) enum Format {
    /// `cnlink proc --format json`.
    Cnlink,
    /// `cnlink record FILE`: nothing on stdout; its recording is read back with `cnlink replay --format json`.
    CnlinkRecord,
    /// `cnlink proc --sink` to a nats-server the harness starts; what `cnlink collect` reads back from the stream
    /// (the same JSON Lines) is what is counted.
    Sink,
    /// The library's `proc_listen` example.
    Example,
    /// The minimal C loop.
    Cloop,
    /// forkstat.
    Forkstat,
}

/// What one output line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A fork event for task `child` (a thread id or a pid); its `tgid` and the `parent_tgid`
    /// when printed (for a new thread the parent is the whole process's parent, so its tgid
    /// tells which process it belongs to).
    Fork { child: i32, tgid: Option<i32>, parent_tgid: Option<i32> },
    /// An exit event for task `pid`; its `tgid` and `parent_tgid` when printed.
    Exit { pid: i32, tgid: Option<i32>, parent_tgid: Option<i32> },
    /// Any other event (exec, comm, ...).
    Other,
    /// The listener reports `count` events lost.
    Lost(u64),
    /// The listener reports a receive-buffer overrun (ENOBUFS) of unknown size.
    Overrun,
    /// Not an event (a header, a start-up line, an ack, an unparsable line).
    NotEvent,
}

impl Line {
    /// Whether the line is one event (what the CPU-per-event figure divides by).
    pub(crate) fn is_event(self) -> bool {
        matches!(self, Line::Fork { .. } | Line::Exit { .. } | Line::Other)
    }
}

/// Parses one line printed by a listener of format `format`.
pub(crate) fn parse(format: Format, line: &str) -> Line {
    match format {
        Format::Cnlink | Format::CnlinkRecord | Format::Sink => json(line),
        Format::Example => key_value(line),
        Format::Cloop => cloop(line),
        Format::Forkstat => forkstat(line),
    }
}

fn json(line: &str) -> Line {
    let Ok(v) = serde_json::from_str::<Value>(line) else { return Line::NotEvent };
    let int = |k: &str| v.get(k).and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok());
    match v.get("event").and_then(Value::as_str) {
        Some("fork") => match int("child_pid") {
            Some(child) => Line::Fork { child, tgid: int("child_tgid"), parent_tgid: int("parent_tgid") },
            None => Line::NotEvent,
        },
        Some("exit") => match int("pid").or_else(|| int("process_pid")) {
            Some(pid) => {
                Line::Exit { pid, tgid: int("tgid").or_else(|| int("process_tgid")), parent_tgid: int("parent_tgid") }
            }
            None => Line::NotEvent,
        },
        Some("lost") => Line::Lost(v.get("count").and_then(Value::as_u64).unwrap_or(0)),
        Some("overrun") => Line::Overrun,
        Some("ack") | None => Line::NotEvent,
        Some(_) => Line::Other,
    }
}

fn key_value(line: &str) -> Line {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or("");
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .and_then(|v| v.parse::<i64>().ok())
    };
    let int = |key: &str| field(key).and_then(|n| i32::try_from(n).ok());
    match kind {
        "fork" => match int("child_pid") {
            Some(child) => Line::Fork { child, tgid: int("child_tgid"), parent_tgid: int("parent_tgid") },
            None => Line::NotEvent,
        },
        "exit" => match int("process_pid") {
            Some(pid) => Line::Exit { pid, tgid: int("process_tgid"), parent_tgid: int("parent_tgid") },
            None => Line::NotEvent,
        },
        "lost" => Line::Lost(field("count").and_then(|n| u64::try_from(n).ok()).unwrap_or(0)),
        "overrun" => Line::Overrun,
        "" | "ack" | "none" => Line::NotEvent,
        _ if line.contains("cpu=") => Line::Other,
        _ => Line::NotEvent,
    }
}

fn cloop(line: &str) -> Line {
    let f: Vec<&str> = line.split_whitespace().collect();
    let int = |i: usize| f.get(i).and_then(|v| v.parse::<i32>().ok());
    match f.first().copied() {
        Some("fork") => match int(3) {
            Some(child) => Line::Fork { child, tgid: int(4), parent_tgid: int(2) },
            None => Line::NotEvent,
        },
        Some("exit") => match int(1) {
            Some(pid) => Line::Exit { pid, tgid: int(2), parent_tgid: int(5) },
            None => Line::NotEvent,
        },
        Some("ev") => Line::Other,
        Some("enobufs") => Line::Overrun,
        _ => Line::NotEvent,
    }
}

fn forkstat(line: &str) -> Line {
    let f: Vec<&str> = line.split_whitespace().collect();
    let pid = f.get(2).and_then(|v| v.parse::<i32>().ok());
    match (f.get(1).copied(), pid) {
        (Some("fork" | "clone"), Some(child)) => match f.get(3).copied() {
            Some("child" | "thread") => Line::Fork { child, tgid: None, parent_tgid: None },
            _ => Line::NotEvent, // the "parent" half of the same event
        },
        (Some("exit"), Some(pid)) => Line::Exit { pid, tgid: None, parent_tgid: None },
        (Some("recv"), _) if line.contains("nobufs") => Line::Overrun,
        (Some("exec" | "uid" | "gid" | "sid" | "core" | "ptrce" | "comm"), Some(_)) => Line::Other,
        _ => Line::NotEvent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnlink_json_lines() {
        let fork = r#"{"event":"fork","cpu":1,"parent_pid":10,"parent_tgid":10,"child_pid":12,"child_tgid":12}"#;
        assert_eq!(parse(Format::Cnlink, fork), Line::Fork { child: 12, tgid: Some(12), parent_tgid: Some(10) });
        let exit = r#"{"event":"exit","pid":12,"tgid":11,"exit_code":0,"parent_tgid":10}"#;
        assert_eq!(parse(Format::Cnlink, exit), Line::Exit { pid: 12, tgid: Some(11), parent_tgid: Some(10) });
        let exit2 = r#"{"event":"exit","process_pid":13,"process_tgid":13}"#;
        assert_eq!(parse(Format::Cnlink, exit2), Line::Exit { pid: 13, tgid: Some(13), parent_tgid: None });
        assert_eq!(parse(Format::Cnlink, r#"{"event":"lost","count":7}"#), Line::Lost(7));
        assert_eq!(parse(Format::Cnlink, r#"{"event":"exec","pid":3}"#), Line::Other);
        assert_eq!(parse(Format::Cnlink, "not json"), Line::NotEvent);
    }

    #[test]
    fn example_display_lines() {
        let fork = "fork cpu=1 timestamp_ns=5 parent_pid=10 parent_tgid=10 child_pid=12 child_tgid=12";
        assert_eq!(parse(Format::Example, fork), Line::Fork { child: 12, tgid: Some(12), parent_tgid: Some(10) });
        let exit = "exit cpu=0 timestamp_ns=9 process_pid=12 process_tgid=12 exit_code=0 (exit 0) \
                    exit_signal=17 parent_pid=10 parent_tgid=10";
        assert_eq!(parse(Format::Example, exit), Line::Exit { pid: 12, tgid: Some(12), parent_tgid: Some(10) });
        assert_eq!(parse(Format::Example, "lost count=3"), Line::Lost(3));
        assert_eq!(parse(Format::Example, "exec cpu=0 timestamp_ns=1 process_pid=4 process_tgid=4"), Line::Other);
        assert_eq!(parse(Format::Example, "subscribed"), Line::NotEvent);
    }

    #[test]
    fn cloop_lines() {
        assert_eq!(parse(Format::Cloop, "fork 1 1 5 5"), Line::Fork { child: 5, tgid: Some(5), parent_tgid: Some(1) });
        assert_eq!(parse(Format::Cloop, "exit 5 4 0 1 1"), Line::Exit { pid: 5, tgid: Some(4), parent_tgid: Some(1) });
        assert_eq!(parse(Format::Cloop, "ev 2 5 5"), Line::Other);
        assert_eq!(parse(Format::Cloop, "enobufs"), Line::Overrun);
        assert_eq!(parse(Format::Cloop, "listening port=7"), Line::NotEvent);
    }

    #[test]
    fn forkstat_lines() {
        let parent = "22:46:23 fork   6393 parent          bash /dev/fd/3";
        let child = "22:46:23 fork   6399 child           bash /dev/fd/3";
        let thread = "22:46:23 clone  6400 thread          storm";
        let exit = "22:46:23 exit   6399      0   0.002s grep";
        assert_eq!(parse(Format::Forkstat, parent), Line::NotEvent);
        assert_eq!(parse(Format::Forkstat, child), Line::Fork { child: 6399, tgid: None, parent_tgid: None });
        assert_eq!(parse(Format::Forkstat, thread), Line::Fork { child: 6400, tgid: None, parent_tgid: None });
        assert_eq!(parse(Format::Forkstat, exit), Line::Exit { pid: 6399, tgid: None, parent_tgid: None });
        let nobufs = "22:51:10 recv ----- nobufs          (No buffer space available)";
        assert_eq!(parse(Format::Forkstat, nobufs), Line::Overrun);
        assert_eq!(parse(Format::Forkstat, "Time     Event   PID Info   Duration Process"), Line::NotEvent);
    }
}
