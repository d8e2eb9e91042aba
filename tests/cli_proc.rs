//! `cnlink proc` end to end against the live kernel (root), and its error exits (anyone).

mod cli_common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_common::{cnlink, json, root_or_skip, Running};

#[test]
fn json_shows_a_childs_fork_and_exit_code_with_its_name() {
    if !root_or_skip("json_shows_a_childs_fork_and_exit_code_with_its_name") {
        return;
    }
    let mon = Running::start(&["proc", "--format", "json", "-l", "-D", "60"]);
    mon.wait_ready_json();
    // Alive long enough for the exec's /proc read, then exit(3).
    let mut child = Command::new("sh").args(["-c", "sleep 0.3; exit 3"]).spawn().unwrap();
    let pid = child.id() as i64;
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let fork = mon.wait_for(Duration::from_secs(10), |l| {
        json(l).is_some_and(|v| v["event"] == "fork" && v["child_pid"].as_i64() == Some(pid))
    });
    let fork = json(&fork.expect("the child's fork")).unwrap();
    assert_eq!(fork["child_tgid"].as_i64(), Some(pid));
    assert_eq!(fork["thread"], false);
    assert!(fork["cpu"].is_u64() && fork["seq"].is_u64() && fork["timestamp_ns"].is_u64());
    let exit = mon.wait_for(Duration::from_secs(10), |l| {
        json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(pid))
    });
    let exit = json(&exit.expect("the child's exit")).unwrap();
    assert_eq!(exit["exit_code"], 768, "{exit}");
    assert_eq!(exit["code"], 3, "{exit}");
    assert_eq!(exit["comm"], "sh", "{exit}");
    assert_eq!(exit["tgid"].as_i64(), Some(pid));
    assert!(exit["lifetime_ns"].as_u64().is_some_and(|l| l >= 300_000_000), "{exit}");
    // Ctrl-C: statistics are not asked for, the exit code is 0.
    mon.interrupt();
    let (code, err, _) = mon.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
}

#[test]
fn exit_filter_shows_no_forks() {
    if !root_or_skip("exit_filter_shows_no_forks") {
        return;
    }
    let mon = Running::start(&["proc", "--format", "json", "-l", "-e", "exit", "-D", "60"]);
    // Ready once a marker's exit shows up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen_exit = false;
    while !seen_exit && Instant::now() < deadline {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id() as i64;
        c.wait().unwrap();
        seen_exit = mon
            .wait_for(Duration::from_millis(500), |l| {
                let v = json(l).expect("every line is JSON");
                assert_ne!(v["event"], "fork", "a fork with -e exit: {l}");
                v["event"] == "exit" && v["pid"].as_i64() == Some(pid)
            })
            .is_some();
    }
    assert!(seen_exit, "no exit event seen");
    mon.interrupt();
    let (code, err, rest) = mon.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
    assert!(rest.iter().all(|l| !l.contains("\"event\":\"fork\"")));
}

#[test]
fn duration_ends_the_run_with_statistics() {
    if !root_or_skip("duration_ends_the_run_with_statistics") {
        return;
    }
    let start = Instant::now();
    let out = cnlink().args(["proc", "-D", "1", "-S", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(15));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lost 0"), "{text}");
    assert!(text.contains("monitor CPU"), "{text}");
}

#[test]
fn json_statistics_line() {
    if !root_or_skip("json_statistics_line") {
        return;
    }
    let out = cnlink().args(["proc", "-D", "0.5", "-S", "-q", "--format", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let last = json(text.lines().last().expect("a stats line")).expect("JSON");
    assert_eq!(last["event"], "stats");
    assert_eq!(last["lost"], 0);
}

#[test]
fn closed_pipe_exits_quietly() {
    if !root_or_skip("closed_pipe_exits_quietly") {
        return;
    }
    let mut child = cnlink().args(["proc", "-l"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    out.read_line(&mut header).unwrap();
    assert!(header.starts_with("Time"), "{header}");
    drop(out);
    // Events to write into the closed pipe.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        Command::new("true").status().unwrap();
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "cnlink kept running after its reader went away");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(err.is_empty(), "not quiet: {err}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["proc", "-e", "bogus"][..], &["proc", "--rcvbuf", "lots"], &["proc", "-e", "fork", "-E"]] {
        let out = cnlink().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn pid_filter_with_descendants() {
    if !root_or_skip("pid_filter_with_descendants") {
        return;
    }
    // A parent that waits for a signal file, then forks a grandchild that exits 5.
    let dir = std::env::temp_dir().join(format!("cnlink-desc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let go = dir.join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done; sh -c 'sleep 0.3; exit 5'", go.display());
    let mut parent = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let ppid = parent.id().to_string();
    let mon = Running::start(&["proc", "--format", "json", "-l", "--pid", &ppid, "--descendants", "-D", "60"]);
    // Nothing else passes the filter, so readiness is a fork of the parent (its polling `sleep`s).
    let ready = mon.wait_for(Duration::from_secs(20), |l| json(l).is_some_and(|v| v["event"] == "fork"));
    assert!(ready.is_some(), "no fork of the watched process");
    std::fs::write(&go, b"").unwrap();
    let exit5 =
        mon.wait_for(Duration::from_secs(10), |l| json(l).is_some_and(|v| v["event"] == "exit" && v["code"] == 5));
    assert!(exit5.is_some(), "the grandchild's exit was not shown");
    parent.wait().unwrap();
    mon.interrupt();
    let (code, _, rest) = mon.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    for l in rest {
        let v = json(&l).unwrap();
        if v["event"] == "exec" {
            assert_ne!(v["comm"], "cnlink", "an unrelated process passed the filter: {l}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `proc` with a tiny receive buffer and a long batch pause through a burst of children: the kernel must
/// drop, and every drop must be reported, the `lost` lines adding up to the statistics.
fn losses_are_reported(extra: &[&str], cause: &str) {
    let mut args = vec!["proc", "--format", "json", "-l", "-S", "--rcvbuf", "4K", "--batch-latency", "300ms"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-D", "60"]);
    let mon = Running::start(&args);
    mon.wait_ready_json();
    for _ in 0..400 {
        Command::new("true").status().unwrap();
    }
    // The burst has been received once a marker started after it shows up (markers may be lost too: retry).
    mon.wait_ready_json();
    mon.interrupt();
    let (code, err, lines) = mon.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "stderr: {err}");
    let objs: Vec<serde_json::Value> = lines.iter().filter_map(|l| json(l)).collect();
    let reported: u64 = objs.iter().filter(|v| v["event"] == "lost").map(|v| v["count"].as_u64().expect("count")).sum();
    assert!(reported > 0, "no loss reported through a burst into a 4 KiB buffer");
    assert!(objs.iter().filter(|v| v["event"] == "lost").all(|v| v["cause"] == cause));
    let stats = objs.last().expect("a stats line");
    assert_eq!(stats["event"], "stats");
    assert_eq!(stats["lost"].as_u64(), Some(reported), "{stats}");
}

#[test]
fn losses_are_counted_from_sequence_gaps() {
    if root_or_skip("losses_are_counted_from_sequence_gaps") {
        losses_are_reported(&[], "seq_gap");
    }
}

#[test]
fn losses_are_counted_with_the_kernel_filter() {
    if root_or_skip("losses_are_counted_with_the_kernel_filter") {
        losses_are_reported(&["-e", "exec", "--no-enrich"], "socket_drops");
    }
}

#[test]
fn names_with_terminal_escapes_are_printed_escaped() {
    if !root_or_skip("names_with_terminal_escapes_are_printed_escaped") {
        return;
    }
    let mon = Running::start(&["proc", "-l", "-e", "exec,comm,exit", "-D", "60"]);
    assert!(mon.wait_for(Duration::from_secs(20), |l| l.starts_with("Time")).is_some(), "no header");
    // argv[0] retitles the terminal and returns the cursor to forge the line; then the comm clears the screen.
    let script = r#"exec -a "$(printf '\033]0;owned\007\rfake')" sh -c 'sleep 0.5; printf "\033[2J\233x" > /proc/$$/comm; sleep 0.5; exit 7'"#;
    let status = Command::new("bash").args(["-c", script]).status().unwrap();
    assert_eq!(status.code(), Some(7));
    // The event column is the second; the parent bash's own lines hold the script's text, not the name.
    let event_is = |l: &str, kind: &str| l.split_whitespace().nth(1) == Some(kind);
    let exit = mon.wait_for(Duration::from_secs(10), |l| event_is(l, "exit") && l.contains(r"\x0dfake"));
    let exit = exit.expect("the exit line of the process with the hostile name");
    mon.interrupt();
    let (code, err, lines) = mon.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
    for l in &lines {
        assert!(!l.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f), "a raw control byte was printed: {l:?}");
        assert!(!l.contains('\u{9b}'), "a C1 control was printed: {l:?}");
    }
    assert!(exit.contains(r"\x1b]0;owned\x07\x0dfake"), "{exit}");
    let comm = lines.iter().find(|l| event_is(l, "comm") && l.contains(r"\x1b[2J"));
    assert!(comm.is_some_and(|l| l.contains(r"\x1b[2J\x9bx")), "{lines:#?}");
}
