//! The golden recordings under `tests/data/` (see its README): `cnlink replay` shows what they hold, exactly,
//! without root and without the kernel. `make_golden_recordings` (ignored; root) makes them again.

mod cli_common;
mod golden_trim;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cli_common::{cnlink, json, ns_last_pid_lock, spawn_as, Running};
use cnlink_capture::{Block, LossKind, Reader, Record};
use serde_json::Value;

/// Where the golden recordings are.
fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// `cnlink replay FILE ARGS`: its exit code, stdout lines and stderr.
fn replay(file: &Path, args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let out = cnlink().arg("replay").arg(file).args(args).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    (out.status.code(), text.lines().map(str::to_string).collect(), String::from_utf8_lossy(&out.stderr).into())
}

/// The replay as JSON lines, `-S` off.
fn replay_json(name: &str) -> Vec<Value> {
    let (code, lines, err) = replay(&data(name), &["--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    lines.iter().map(|l| json(l).unwrap_or_else(|| panic!("not JSON: {l}"))).collect()
}

/// The argv of a record.
fn argv(v: &Value) -> Vec<&str> {
    v["argv"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The pid a record is about.
fn pid(v: &Value) -> i64 {
    v["pid"].as_i64().or_else(|| v["child_pid"].as_i64()).unwrap_or(-1)
}

/// The loss records of a recording: (kind, count, exact).
fn losses(file: &Path) -> Vec<(LossKind, Option<u64>, bool)> {
    let bytes = std::fs::read(file).unwrap();
    Reader::new(&bytes)
        .filter_map(|b| match b.unwrap() {
            Block::Record(Record::Loss(l)) => Some((l.kind, l.count, !l.lower_bound)),
            _ => None,
        })
        .collect()
}

#[test]
fn the_goldens_are_small() {
    for name in ["chain.pcapng", "storm-loss.pcapng", "pid-reuse.pcapng"] {
        let len = std::fs::metadata(data(name)).unwrap().len();
        assert!(len < 64 << 10, "{name}: {len} bytes");
    }
}

#[test]
fn golden_chain_replays_its_programs_exit_codes_and_ancestry() {
    let lines = replay_json("chain.pcapng");
    // The workload: sh -c 'sh -c "exit 7"; ls / >/dev/null; exit 3' cnlink-golden-chain.
    let root = lines
        .iter()
        .find(|v| v["event"] == "exec" && argv(v).last() == Some(&"cnlink-golden-chain"))
        .expect("the chain's exec");
    let root_pid = pid(root);
    let root_id = root["entity_id"].as_str().unwrap();
    assert_eq!(argv(root)[..2], ["sh", "-c"]);
    assert_eq!(root["exe"], "/usr/bin/dash");
    // Every event, in order, with the program it showed.
    let summary: Vec<(String, String, Option<i64>)> = lines
        .iter()
        .filter(|v| v["event"] != "stats")
        .map(|v| {
            let name = v["comm"].as_str().unwrap_or("?").to_string();
            (v["event"].as_str().unwrap().to_string(), name, v["code"].as_i64())
        })
        .collect();
    let programs: Vec<(&str, &str, Option<i64>)> =
        summary.iter().map(|(e, n, c)| (e.as_str(), n.as_str(), *c)).filter(|(e, ..)| *e != "fork").collect();
    assert_eq!(
        programs,
        [
            ("exec", "sh", None),
            ("exec", "sh", None),
            ("exit", "sh", Some(7)),
            ("exec", "ls", None),
            ("exit", "ls", Some(0)),
            ("exit", "sh", Some(3)),
        ],
        "{summary:?}"
    );
    // The children name the chain as their parent and first ancestor.
    for v in lines.iter().filter(|v| v["event"] == "exec" && pid(v) != root_pid) {
        assert_eq!(v["parent_entity_id"], root_id, "{v}");
        assert_eq!(v["ancestors"][0]["entity_id"], root_id, "{v}");
        assert_eq!(v["ancestors"][0]["pid"], root_pid, "{v}");
    }
    // The chain's own ancestors were alive when the recording began: they come from its snapshot, up to pid 1.
    let ancestors = root["ancestors"].as_array().unwrap();
    assert!(ancestors.len() >= 2 && ancestors.last().unwrap()["pid"] == 1, "{root}");
    assert!(lines.iter().all(|v| v["event"] != "lost"), "nothing lost");
    // Text: the same programs and codes in forkstat's columns.
    let (code, text, err) = replay(&data("chain.pcapng"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let columns = |l: &String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let exits: Vec<(String, String)> = text
        .iter()
        .map(columns)
        .filter(|c| c.get(1).map(String::as_str) == Some("exit"))
        .map(|c| (c[2].clone(), c[3].clone()))
        .collect();
    let pid_of = |p: i64| p.to_string();
    let children: Vec<i64> = lines.iter().filter(|v| v["event"] == "exit" && pid(v) != root_pid).map(pid).collect();
    assert_eq!(
        exits,
        [
            (pid_of(children[0]), "7".to_string()),
            (pid_of(children[1]), "0".to_string()),
            (pid_of(root_pid), "3".to_string())
        ],
        "{text:#?}"
    );
    assert!(text.iter().any(|l| columns(l).get(1).map(String::as_str) == Some("exec") && l.ends_with(" ls /")));
}

#[test]
fn golden_storm_replays_its_loss_exactly() {
    let file = data("storm-loss.pcapng");
    let recorded = losses(&file);
    // The receive buffer overflowed: overruns, and the sequence gaps they left, each counted exactly.
    let gaps: Vec<_> = recorded.iter().filter(|(k, ..)| *k == LossKind::SeqGap).collect();
    assert!(!gaps.is_empty(), "{recorded:?}");
    assert!(gaps.iter().all(|(_, count, exact)| count.is_some_and(|n| n > 0) && *exact), "{recorded:?}");
    assert!(recorded.iter().any(|(k, ..)| *k == LossKind::Overrun), "{recorded:?}");
    let lines = replay_json("storm-loss.pcapng");
    let lost: Vec<(u64, &str)> = lines
        .iter()
        .filter(|v| v["event"] == "lost")
        .map(|v| (v["count"].as_u64().unwrap(), v["cause"].as_str().unwrap()))
        .collect();
    let want: Vec<(u64, &str)> = gaps.iter().map(|(_, c, _)| (c.unwrap(), "seq_gap")).collect();
    assert_eq!(lost, want, "every loss, with its exact count and cause");
    assert!(lines.iter().filter(|v| v["event"] == "lost").all(|v| v["exact"] == true));
    // The storm's threads: every one shown belongs to the storm's process.
    let storm = lines.iter().find(|v| v["event"] == "exec" && argv(v).contains(&"cnlink-golden-storm")).unwrap();
    let threads: Vec<&Value> = lines.iter().filter(|v| v["event"] == "fork" && v["thread"] == true).collect();
    assert!(!threads.is_empty());
    assert!(threads.iter().all(|v| v["child_tgid"] == storm["pid"] && v["entity_id"] == storm["entity_id"]));
    // Text: the loss line with its count and cause.
    let (code, text, err) = replay(&file, &[]);
    assert_eq!(code, Some(0), "{err}");
    let text_lost: Vec<&String> = text.iter().filter(|l| l.contains("events lost")).collect();
    assert_eq!(text_lost.len(), want.len(), "{text_lost:#?}");
    for (line, (n, cause)) in text_lost.iter().zip(&want) {
        assert!(line.contains(&format!(" {n} events lost ({cause})")), "{line}");
    }
}

#[test]
fn golden_pid_reuse_never_shows_the_first_process_in_the_second() {
    let lines = replay_json("pid-reuse.pcapng");
    let first = lines
        .iter()
        .find(|v| v["event"] == "exec" && argv(v).contains(&"cnlink-golden-first"))
        .expect("the first process's exec");
    let n = pid(first);
    let of_n: Vec<&Value> = lines.iter().filter(|v| pid(v) == n && v["thread"] != true).collect();
    let ids: Vec<&str> = of_n.iter().filter_map(|v| v["entity_id"].as_str()).collect();
    let distinct: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 2, "two processes had pid {n}: {of_n:#?}");
    let first_id = first["entity_id"].as_str().unwrap();
    let second: Vec<&&Value> = of_n.iter().filter(|v| v["entity_id"] != first_id).collect();
    // The second process: its fork, exec and exit, none with the first's argv or program.
    let events: Vec<&str> = second.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["fork", "exec", "exit"], "{second:#?}");
    for v in &second {
        assert!(!argv(v).contains(&"cnlink-golden-first"), "{v}");
        assert_ne!(v["exe"], "/usr/bin/dash", "{v}");
    }
    assert_eq!(argv(second[2]), ["sleep", "0.1"]);
    assert_eq!(second[2]["exe"], "/usr/bin/sleep");
    // The first process exited with its own code, under its own id.
    let exit = of_n.iter().find(|v| v["event"] == "exit" && v["entity_id"] == first_id).unwrap();
    assert_eq!((exit["code"].as_i64(), argv(exit).last().copied()), (Some(5), Some("cnlink-golden-first")));
}

/// A marker child started now, until the monitor shows one's exit: everything received before was handled.
fn settle(run: &Running) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut c = Command::new("true").spawn().unwrap();
        let p = i64::from(c.id());
        c.wait().unwrap();
        let exit = |l: &str| json(l).is_some_and(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(p));
        if run.wait_for(Duration::from_millis(500), exit).is_some() {
            return;
        }
    }
    panic!("the monitor showed no marker's exit");
}

/// Records `cnlink proc --record` (with `args`) around `workload`, which returns the pids it started.
fn record(dir: &Path, args: &[&str], workload: impl FnOnce() -> Vec<i32>) -> (PathBuf, Vec<i32>) {
    let file = dir.join("full.pcapng");
    let _ = std::fs::remove_file(&file);
    let mut all = vec!["proc", "--record", file.to_str().unwrap(), "--format", "json"];
    all.extend_from_slice(args);
    let run = Running::start(&all);
    run.wait_ready_json();
    let roots = workload();
    settle(&run);
    run.interrupt();
    let (code, err, _) = run.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err}");
    (file, roots)
}

/// Runs `cmd` to its end; returns its pid.
fn run_to_end(cmd: &mut Command) -> (i32, Option<i32>) {
    let mut c = cmd.spawn().unwrap();
    let pid = c.id() as i32;
    (pid, c.wait().unwrap().code())
}

/// Starts `cmd` as pid `want` and runs it to its end; `None` when another process took the pid first.
fn run_as(want: i32, cmd: &mut Command) -> Option<Option<i32>> {
    spawn_as(want, cmd).map(|mut c| c.wait().unwrap().code())
}

/// Makes the golden recordings again (root): `cargo test --test cli_golden -- --ignored make_golden_recordings`.
#[test]
#[ignore = "makes tests/data/*.pcapng again; needs root and the live kernel"]
fn make_golden_recordings() {
    assert!(rustix::process::geteuid().is_root(), "needs root");
    let dir = tempfile::tempdir().unwrap();

    // A fork/exec/exit chain with exit codes.
    let (full, roots) = record(dir.path(), &[], || {
        let script = r#"sh -c "exit 7"; ls / >/dev/null; exit 3"#;
        let (pid, code) = run_to_end(Command::new("sh").args(["-c", script, "cnlink-golden-chain"]));
        assert_eq!(code, Some(3));
        vec![pid]
    });
    golden_trim::trim(&full, &roots, &data("chain.pcapng"));

    // A thread storm into a receive buffer of 4 KiB: the recording holds the loss.
    let storm = "import threading\nts = [threading.Thread(target=int) for _ in range(400)]\n\
                 for t in ts: t.start()\nfor t in ts: t.join()\n";
    let mut made = false;
    for _ in 0..5 {
        let (full, roots) = record(dir.path(), &["--rcvbuf", "4K"], || {
            let (pid, code) = run_to_end(Command::new("/usr/bin/python3").args(["-c", storm, "cnlink-golden-storm"]));
            assert_eq!(code, Some(0));
            vec![pid]
        });
        if losses(&full).iter().any(|(k, ..)| *k == LossKind::SeqGap) {
            golden_trim::trim(&full, &roots, &data("storm-loss.pcapng"));
            made = true;
            break;
        }
    }
    assert!(made, "no storm lost events");

    // A pid used twice, the second time forced through ns_last_pid.
    let _lock = ns_last_pid_lock();
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let mut made = false;
    for attempt in 0..20 {
        let (full, roots) = record(dir.path(), &[], || {
            let last: i32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
            let mut n = last + 300 + attempt * 50;
            if n >= pid_max - 10 {
                n = 1000 + attempt * 50;
            }
            let mut first = Command::new("sh");
            first.args(["-c", "sleep 0.2; exit 5", "cnlink-golden-first"]);
            match run_as(n, &mut first) {
                Some(Some(5)) => {}
                _ => return Vec::new(),
            }
            match run_as(n, Command::new("sleep").arg("0.1")) {
                Some(Some(0)) => vec![n],
                _ => Vec::new(),
            }
        });
        if !roots.is_empty() {
            golden_trim::trim(&full, &roots, &data("pid-reuse.pcapng"));
            made = true;
            break;
        }
    }
    assert!(made, "pid reuse could not be forced in 20 attempts");
    let sizes: BTreeMap<&str, u64> = ["chain.pcapng", "storm-loss.pcapng", "pid-reuse.pcapng"]
        .into_iter()
        .map(|n| (n, std::fs::metadata(data(n)).unwrap().len()))
        .collect();
    eprintln!("golden recordings made: {sizes:?}");
}
