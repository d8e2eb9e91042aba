//! `cnlink record`, `cnlink replay`, `cnlink proc --record` and `cnlink listen --record` through the binary: a
//! replay prints what the live run printed, byte for byte; tshark reads every file; damage is reported.

mod cli_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cli_common::{cnlink, json, root_or_skip, Running};

/// A workload of our own: a shell chain, an exit with a code, short-lived programs. Returns the shell's pid.
fn workload() -> i64 {
    let mut sh = Command::new("sh")
        .args(["-c", "true; /bin/echo chain >/dev/null; sh -c 'exit 7'; ls / >/dev/null; exit 3"])
        .spawn()
        .unwrap();
    let pid = sh.id() as i64;
    assert_eq!(sh.wait().unwrap().code(), Some(3));
    pid
}

/// Runs `cnlink proc --record FILE ARGS` through the workload, stopped by Ctrl-C once the shell's exit is
/// shown; returns its stdout.
fn live(file: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["proc", "--record", file.to_str().unwrap(), "--format", "json"];
    all.extend_from_slice(args);
    let run = Running::start(&all);
    run.wait_ready_json();
    let pid = workload();
    let exit = run.wait_for(Duration::from_secs(20), |l| {
        json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(pid))
    });
    assert!(exit.is_some(), "the live run showed the shell's exit");
    run.interrupt();
    let (code, err, lines) = run.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("recorded") && err.contains("0 missed by the recording"), "{err}");
    lines
}

fn replay(args: &[&str]) -> (Option<i32>, String, String) {
    let out = cnlink().arg("replay").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_what_proc_printed_live_in_json() {
    if !root_or_skip("replay_prints_what_proc_printed_live_in_json") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.pcapng");
    let lines = live(&file, &["-S"]);
    let (code, out, err) = replay(&[file.to_str().unwrap(), "--format", "json", "-S"]);
    assert_eq!(code, Some(0), "{err}");
    let replayed: Vec<&str> = out.lines().collect();
    // The stats line holds the run's own times and CPU: every event and loss line must be the same.
    let events = |ls: &[&str]| {
        ls.iter().filter(|l| !l.contains("\"event\":\"stats\"")).map(|l| l.to_string()).collect::<Vec<_>>()
    };
    let live_lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    same(&events(&replayed), &events(&live_lines));
    assert!(replayed.iter().any(|l| l.contains("\"exit_code\":7") || l.contains("\"code\":7")), "the exit 7 is there");
}

#[test]
fn replay_prints_what_proc_printed_live_in_text() {
    if !root_or_skip("replay_prints_what_proc_printed_live_in_text") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.pcapng");
    // Text on stdout, with the extra columns, for a bounded time; readiness is the workload showing up.
    let run = Running::start(&["proc", "--record", file.to_str().unwrap(), "-x", "-D", "3"]);
    let ready = run.wait_for(Duration::from_secs(20), |l| l.contains("Time") || l.contains("Event"));
    assert!(ready.is_some(), "the header line");
    let mut pid = 0;
    for _ in 0..40 {
        pid = workload();
        if run.wait_for(Duration::from_millis(200), |l| l.contains(&format!(" {pid} ")) && l.contains("exit")).is_some()
        {
            break;
        }
    }
    let (code, err, live) = run.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    assert!(live.iter().any(|l| l.contains(&pid.to_string())), "the live run showed the workload");
    let (code, out, err) = replay(&[file.to_str().unwrap(), "-x"]);
    assert_eq!(code, Some(0), "{err}");
    same(&out.lines().map(str::to_string).collect::<Vec<_>>(), &live);
}

#[test]
fn replay_prints_what_proc_printed_live_in_ecs_and_as_a_tree() {
    if !root_or_skip("replay_prints_what_proc_printed_live_in_ecs_and_as_a_tree") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let views: [(&str, &[&str]); 2] = [("ecs", &["--format", "ecs"]), ("tree", &["--tree", "-x"])];
    for (name, view) in views {
        let file = dir.path().join(format!("{name}.pcapng"));
        let mut args = vec!["proc", "--record", file.to_str().unwrap(), "-D", "60"];
        args.extend_from_slice(view);
        // A child of the test that is in the recording's start-up snapshot and exits during it: a root for the
        // tree filters below whose subtree leaves the workload out.
        let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
        let sleeper_pid = i64::from(sleeper.id());
        let run = Running::start(&args);
        // Readiness: the workload's exit shows (ECS has no header line).
        let shown = |pid: i64| {
            move |l: &str| match json(l) {
                Some(v) => v["event"]["action"] == "exit" && v["process"]["pid"].as_i64() == Some(pid),
                None => l.contains(&format!(" {pid} ")) && l.contains("exit"),
            }
        };
        let ready = (0..100).any(|_| run.wait_for(Duration::from_millis(200), shown(workload())).is_some());
        assert!(ready, "{name}: the workload never showed");
        // Once more, the monitor well started: every process of it is known from its fork.
        let pid = workload();
        assert!(run.wait_for(Duration::from_secs(20), shown(pid)).is_some(), "{name}: the workload's exit");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert!(run.wait_for(Duration::from_secs(20), shown(sleeper_pid)).is_some(), "{name}: the sleeper's exit");
        run.interrupt();
        let (code, err, live) = run.finish(Duration::from_secs(20));
        assert_eq!(code, Some(0), "{name}: {err}");
        assert!(live.iter().any(|l| shown(pid)(l)), "{name}: the live run showed the workload's exit");
        let mut args = vec![file.to_str().unwrap()];
        args.extend_from_slice(view);
        let (code, out, err) = replay(&args);
        assert_eq!(code, Some(0), "{name}: {err}");
        same(&out.lines().map(str::to_string).collect::<Vec<_>>(), &live);
        if name != "ecs" {
            continue;
        }
        // The tree filters at replay time, rooted at this test and at the sleeper (both in the recording's start-up
        // snapshot). What is below a root is taken from the unfiltered replay's fork chain (the filter keeps a
        // descendant that was re-parented to init: its ancestors then stop at init).
        let file = file.to_str().unwrap();
        let docs = |args: &[&str]| -> Vec<serde_json::Value> {
            let (code, out, err) = replay(args);
            assert_eq!(code, Some(0), "{args:?}: {err}");
            out.lines().map(|l| json(l).unwrap()).filter(|d| d["process"]["entity_id"].is_string()).collect()
        };
        let all = docs(&[file, "--format", "ecs"]);
        let exec_exit = docs(&[file, "--format", "ecs", "-e", "exec,exit"]);
        let ids = |ds: &[&serde_json::Value]| -> Vec<serde_json::Value> {
            ds.iter().map(|d| d["event"]["id"].clone()).collect()
        };
        let entity_of = |pid: i64| {
            let mut ids = all.iter().flat_map(|d| [&d["process"], &d["process"]["parent"]]);
            ids.find(|p| p["pid"].as_i64() == Some(pid) && p["entity_id"].is_string())
                .map(|p| p["entity_id"].clone())
                .expect("in the recording")
        };
        for root in [i64::from(std::process::id()), sleeper_pid] {
            let mut below = std::collections::HashSet::from([entity_of(root)]);
            // To a fixed point: a process of the start-up snapshot may show before its parent does.
            loop {
                let before = below.len();
                for d in &all {
                    let parent = &d["process"]["parent"]["entity_id"];
                    if parent.is_string() && below.contains(parent) {
                        below.insert(d["process"]["entity_id"].clone());
                    }
                }
                if below.len() == before {
                    break;
                }
            }
            let want_in: Vec<_> = exec_exit.iter().filter(|d| below.contains(&d["process"]["entity_id"])).collect();
            let workload_in = want_in.iter().any(|d| shown(pid)(&d.to_string()));
            assert_eq!(workload_in, root != sleeper_pid, "the workload is below the test, not below the sleeper");
            let root_s = root.to_string();
            let kept = docs(&[file, "--format", "ecs", "-e", "exec,exit", "--descendants-of", &root_s]);
            let dropped = docs(&[file, "--format", "ecs", "-e", "exec,exit", "--exclude-descendants-of", &root_s]);
            let (kept, dropped) = (ids(&kept.iter().collect::<Vec<_>>()), ids(&dropped.iter().collect::<Vec<_>>()));
            // The two filters split the events between them, each event to one side, in order.
            let mut merged: Vec<_> = kept.iter().chain(&dropped).cloned().collect();
            let all_ids = ids(&exec_exit.iter().collect::<Vec<_>>());
            let at = |id: &serde_json::Value| all_ids.iter().position(|a| a == id);
            merged.sort_by_key(|id| at(id));
            assert_eq!(merged, all_ids, "{root}: every event on exactly one side");
            let want_in = ids(&want_in);
            if root == sleeper_pid {
                // Its subtree is known whole (it was in the snapshot and forked nothing).
                assert_eq!(kept, want_in, "exactly the sleeper's events");
            } else {
                // Every event of the fork chain is kept; the filter may know more of the machine's start-up
                // snapshot than the events show (a process whose exit names a parent the events never did).
                let missing: Vec<_> = want_in.iter().filter(|id| !kept.contains(id)).collect();
                assert!(missing.is_empty(), "{root}: descendants dropped: {missing:?}");
            }
        }
    }
}

/// Asserts that two outputs are the same, showing the first difference only.
fn same(replayed: &[String], live: &[String]) {
    if let Some(i) = (0..replayed.len().max(live.len())).find(|&i| replayed.get(i) != live.get(i)) {
        let cut = |l: Option<&String>| l.map(|l| l.chars().take(400).collect::<String>());
        panic!(
            "line {i} of {} replayed / {} live differs:\nreplayed: {:?}\nlive:     {:?}",
            replayed.len(),
            live.len(),
            cut(replayed.get(i)),
            cut(live.get(i))
        );
    }
}

#[test]
fn tshark_reads_a_recording_and_a_cut_one_is_replayed_up_to_the_damage() {
    if !root_or_skip("tshark_reads_a_recording_and_a_cut_one_is_replayed_up_to_the_damage") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.pcapng");
    let run = Running::start(&["record", file.to_str().unwrap(), "-D", "60"]);
    // The file is created once the subscription is acknowledged and the table is read: the workload is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&file).map_or(true, |m| m.len() == 0) {
        assert!(std::time::Instant::now() < deadline, "record never created {}", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = workload();
    // Its events reach the writer within a batch; SIGINT then writes what was received.
    std::thread::sleep(Duration::from_millis(300));
    run.interrupt();
    let (code, err, out) = run.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.is_empty(), "record prints nothing: {out:?}");
    let t = Command::new("tshark").args(["-n", "-r", file.to_str().unwrap(), "-Y", "netlink.family == 11"]).output();
    match t {
        Ok(t) => {
            assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
            assert!(String::from_utf8_lossy(&t.stdout).lines().count() > 5);
        }
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => eprintln!("tshark not run: {e}"),
        Err(e) => panic!("tshark: {e}"),
    }
    let (code, out, err) = replay(&[file.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(pid))));
    // Cut the file in the middle of its last blocks: what came before is replayed, the damage is reported.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.pcapng");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let (code, cut_out, err) = replay(&[cut.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cut.pcapng: damaged at byte") && err.contains("truncated"), "{err}");
    let full: Vec<&str> = out.lines().collect();
    let part: Vec<&str> = cut_out.lines().collect();
    assert!(!part.is_empty() && part.len() <= full.len());
    // The same events up to the damage (the /proc answers for the last of them may have been written after it:
    // those are then shown without what was read).
    let events = |ls: &[&str]| -> Vec<(serde_json::Value, serde_json::Value, serde_json::Value)> {
        ls.iter().filter_map(|l| json(l)).map(|v| (v["event"].clone(), v["cpu"].clone(), v["seq"].clone())).collect()
    };
    let (part, full) = (events(&part), events(&full));
    assert_eq!(part[..part.len() - 1], full[..part.len() - 1], "the same events up to the damage");
}

#[test]
fn listen_records_every_datagram_for_tshark_and_replay() {
    if !root_or_skip("listen_records_every_datagram_for_tshark_and_replay") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("l.pcapng");
    let run = Running::start(&["listen", "--group", "1", "--record", file.to_str().unwrap(), "-D", "30"]);
    // Readiness: a child of ours shows.
    let ready = (0..100).any(|_| {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        run.wait_for(Duration::from_millis(200), |l| l.contains(&format!("pid={pid} "))).is_some()
    });
    assert!(ready, "listen never showed a child of the test");
    let mut pids = Vec::new();
    for _ in 0..20 {
        let mut c = Command::new("true").spawn().unwrap();
        pids.push(c.id());
        c.wait().unwrap();
    }
    let last = *pids.last().unwrap();
    assert!(run.wait_for(Duration::from_secs(20), |l| l.contains(&format!("pid={last} "))).is_some(), "child {last}");
    run.interrupt();
    let (code, err, live) = run.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("0 missed by the recording thread"), "{err}");
    let (code, out, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    same(&out.lines().map(str::to_string).collect::<Vec<_>>(), &live);
    for pid in &pids {
        assert!(out.contains(&format!("process_pid={pid} ")) || out.contains(&format!("pid={pid}")), "child {pid}");
    }
    if let Ok(t) = Command::new("tshark").args(["-n", "-r", file.to_str().unwrap()]).output() {
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    }
}

#[test]
fn listen_records_a_datagram_that_does_not_decode_as_received() {
    if !root_or_skip("listen_records_a_datagram_that_does_not_decode_as_received") {
        return;
    }
    use cnlink::socket::{NlAddr, Protocol, Socket};
    use cnlink::wire::{CbId, CnMsgHdr};
    use cnlink_capture::{Block, Reader};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raw.pcapng");
    // Connector group 21: no kernel user; a root process may multicast there.
    let run = Running::start(&["listen", "--group", "21", "--record", file.to_str().unwrap(), "-D", "30"]);
    let sock = Socket::open(Protocol::Connector).unwrap();
    // A netlink header whose message is too short for a cn_msg: the client counts it malformed, shows nothing.
    let broken = |n: u8| {
        let mut d = Vec::new();
        d.extend_from_slice(&20u32.to_ne_bytes()); // nlmsg_len: the header and 4 bytes
        d.extend_from_slice(&3u16.to_ne_bytes()); // nlmsg_type NLMSG_DONE
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // flags, seq, pid
        d.extend_from_slice(&[0xde, 0xad, 0xbe, n]); // not a cn_msg
        d
    };
    let mut sent = Vec::new();
    let mut seen = None;
    for n in 0..50u8 {
        let bad = broken(n);
        sock.send_to(&bad, NlAddr { port: 0, groups: 1 << 20 }).unwrap();
        sent.push(bad);
        let good = cnlink::wire::datagram(
            CnMsgHdr { id: CbId::new(21, 1), seq: u32::from(n), ..Default::default() },
            b"ok",
            0,
        )
        .unwrap();
        sock.send_to(&good, NlAddr { port: 0, groups: 1 << 20 }).unwrap();
        if run.wait_for(Duration::from_millis(200), |l| l.contains("cn_msg id=21.1")).is_some() {
            seen = Some(n);
            break;
        }
    }
    let n = seen.expect("listen showed none of the messages");
    run.interrupt();
    let (code, err, _) = run.finish(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{err}");
    let bytes = std::fs::read(&file).unwrap();
    let packets: Vec<Vec<u8>> = Reader::new(&bytes)
        .filter_map(|b| match b.unwrap() {
            Block::Packet(p) => Some(p.data.to_vec()),
            _ => None,
        })
        .collect();
    // The broken datagram sent just before the message listen showed is in the file, byte for byte.
    assert!(packets.contains(&sent[usize::from(n)]), "{packets:?}");
    // Replay decodes it as live did: counted malformed, not shown; the message after it is shown.
    let (code, out, err) = replay(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cn_msg id=21.1") && !out.contains("deadbe"), "{out}");
}

/// The (cpu, seq) of an event line, `None` for other lines.
fn event_key(v: &serde_json::Value) -> Option<(u64, u64)> {
    Some((v["cpu"].as_u64()?, v["seq"].as_u64()?))
}

#[test]
fn each_file_of_a_rotated_recording_replays_alone() {
    if !root_or_skip("each_file_of_a_rotated_recording_replays_alone") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rot.pcapng");
    let run = Running::start(&["proc", "--record", file.to_str().unwrap(), "--rotate", "48K", "--format", "json"]);
    run.wait_ready_json();
    let files = |dir: &Path| {
        let mut f: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        f.sort();
        f
    };
    // Programs with a marker in their argv, at least 20, until the recording has rotated at least twice.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    let mut last = 0;
    while (n < 20 || files(dir.path()).len() < 3) && std::time::Instant::now() < deadline {
        let mut c = Command::new("sh").args(["-c", "sleep 0.02; exit 4", &format!("cnlink-rot-{n}")]).spawn().unwrap();
        last = i64::from(c.id());
        c.wait().unwrap();
        n += 1;
    }
    // The last program's exit is shown: everything before it was received.
    let seen = run.wait_for(Duration::from_secs(20), |l| {
        json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(last))
    });
    run.interrupt();
    let (code, err, live) = run.finish(Duration::from_secs(20));
    assert!(seen.is_some(), "the last program's exit ({last}); stderr: {}", err.chars().take(400).collect::<String>());
    assert_eq!(code, Some(0), "{err}");
    let files = files(dir.path());
    assert!(files.len() >= 3, "{n} programs made {} files: {files:?}", files.len());
    let parse = |lines: &[String]| -> Vec<serde_json::Value> { lines.iter().filter_map(|l| json(l)).collect() };
    let live = parse(&live);
    let by_key: std::collections::HashMap<_, _> = live.iter().filter_map(|v| Some((event_key(v)?, v))).collect();
    // The files in order replay as the live run printed.
    let paths: Vec<&str> = files.iter().map(|f| f.to_str().unwrap()).collect();
    let mut args = paths.clone();
    args.extend(["--format", "json"]);
    let (code, out, err) = replay(&args);
    assert_eq!(code, Some(0), "{err}");
    let all: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(parse(&all), live, "the whole set replays as live");
    // Each file alone: its events, once each across the files, with the ids and programs live showed.
    let mut keys = Vec::new();
    let mut marked = vec![0u32; paths.len()];
    for (i, f) in paths.iter().enumerate() {
        let (code, out, err) = replay(&[f, "--format", "json"]);
        assert_eq!(code, Some(0), "{f}: {err}");
        for v in parse(&out.lines().map(str::to_string).collect::<Vec<_>>()) {
            let Some(k) = event_key(&v) else { continue };
            keys.push(k);
            let l = by_key.get(&k).unwrap_or_else(|| panic!("{f}: {v} was not shown live"));
            assert_eq!(v["event"], l["event"]);
            // A process with an id from its start time (one whose id came from an event is not in a snapshot).
            let ours =
                l["cmdline"].as_str().is_some_and(|c| c.contains("cnlink-rot-")) && l["entity_id_source"] == "stat";
            if ours && (v["event"] == "exec" || v["event"] == "exit") {
                marked[i] += 1;
                for key in ["entity_id", "parent_entity_id", "cmdline", "exe", "cwd", "uid", "cgroup"] {
                    assert_eq!(v[key], l[key], "{f}: {key} of {v}");
                }
                let ids = |x: &serde_json::Value| -> Vec<serde_json::Value> {
                    x["ancestors"].as_array().into_iter().flatten().map(|a| a["entity_id"].clone()).collect()
                };
                assert_eq!(ids(&v), ids(l), "{f}: ancestry of {v}");
            }
        }
    }
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), keys.len(), "no event in two files");
    assert_eq!(keys.len(), by_key.len(), "every event in some file");
    // Programs of ours in files that start with a rotation snapshot were checked (an exec read after the program
    // had exited has no command line, live and replayed: those are not).
    let checked: u32 = marked[1..].iter().sum();
    assert!(checked >= 10, "exec and exit lines of ours checked, per file: {marked:?}");
}
