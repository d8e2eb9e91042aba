//! `cnlink proc --format json` and the process model's keys (docs/json.md), against the live kernel (root).

mod cli_common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use cli_common::{json, ns_last_pid_lock, root_or_skip, spawn_as, Running};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(15);

/// A monitor of everything, ready.
fn monitor(extra: &[&str]) -> Running {
    let mut args = vec!["proc", "--format", "json", "-l", "-D", "120"];
    args.extend_from_slice(extra);
    let mon = Running::start(&args);
    mon.wait_ready_json();
    mon
}

/// The next line about `pid` of kind `event` (for a fork: the child).
fn wait_event(mon: &Running, event: &str, pid: i64) -> Value {
    let line = mon.wait_for(WAIT, |l| {
        json(l).is_some_and(|v| {
            v["event"] == event
                && match event {
                    "fork" => v["child_pid"].as_i64() == Some(pid),
                    _ => v["pid"].as_i64() == Some(pid),
                }
        })
    });
    json(&line.unwrap_or_else(|| panic!("no {event} of {pid}"))).unwrap()
}

fn id(v: &Value, key: &str) -> String {
    let s = v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"));
    assert!(s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()), "{key} is not an entity id: {v}");
    s.to_owned()
}

fn ancestor_pids(v: &Value) -> Vec<i64> {
    v["ancestors"]
        .as_array()
        .unwrap_or_else(|| panic!("no ancestors in {v}"))
        .iter()
        .map(|a| a["pid"].as_i64().unwrap())
        .collect()
}

#[test]
fn a_shell_chain_has_consistent_ids_ancestry_and_exact_argv() {
    if !root_or_skip("a_shell_chain_has_consistent_ids_ancestry_and_exact_argv") {
        return;
    }
    let mon = monitor(&[]);
    // This test forks `sh`, which runs `sleep` as its own child; one argument has a space, one is not UTF-8.
    let mut sh = Command::new("sh")
        .args(["-c", "sleep 0.4; exit 4", "chain-marker", "a b"])
        .arg(OsStr::from_bytes(b"\xffz"))
        .spawn()
        .unwrap();
    let pid = sh.id() as i64;
    assert_eq!(sh.wait().unwrap().code(), Some(4));
    let fork = wait_event(&mon, "fork", pid);
    let exec = wait_event(&mon, "exec", pid);
    let sleep_fork = mon
        .wait_for(WAIT, |l| json(l).is_some_and(|v| v["event"] == "fork" && v["parent_tgid"].as_i64() == Some(pid)))
        .map(|l| json(&l).unwrap())
        .expect("the fork of sleep");
    let sleep_pid = sleep_fork["child_pid"].as_i64().unwrap();
    let sleep_exec = wait_event(&mon, "exec", sleep_pid);
    let sleep_exit = wait_event(&mon, "exit", sleep_pid);
    let exit = wait_event(&mon, "exit", pid);
    mon.interrupt();
    let (code, err, _) = mon.finish(WAIT);
    assert_eq!(code, Some(0), "stderr: {err}");

    // One id from fork to exit; the parent's id is this test process's.
    let sh_id = id(&fork, "entity_id");
    assert_eq!((id(&exec, "entity_id"), id(&exit, "entity_id")), (sh_id.clone(), sh_id.clone()));
    assert_eq!(fork["entity_id_source"], "stat", "{fork}");
    assert_eq!(exec["enrichment"], "ok", "{exec}");
    let me = std::process::id() as i64;
    assert_eq!(exec["ancestors"][0]["pid"].as_i64(), Some(me), "{exec}");
    assert_eq!(id(&exec["ancestors"][0], "entity_id"), id(&fork, "parent_entity_id"));
    assert_eq!(id(&exec, "parent_entity_id"), id(&fork, "parent_entity_id"));
    // sleep's parent is sh, by id; its ancestry goes up to init.
    assert_eq!(id(&sleep_fork, "parent_entity_id"), sh_id);
    assert_eq!(id(&sleep_exec, "entity_id"), id(&sleep_fork, "entity_id"));
    assert_eq!(id(&sleep_exit, "entity_id"), id(&sleep_fork, "entity_id"));
    let chain = ancestor_pids(&sleep_exec);
    assert_eq!(&chain[..2], [pid, me], "{sleep_exec}");
    assert_eq!(chain.last(), Some(&1), "the ancestry ends at init: {sleep_exec}");
    assert_eq!(id(&sleep_exec["ancestors"][0], "entity_id"), sh_id);
    assert_eq!(ancestor_pids(&sleep_exit), chain, "exit lines carry the same ancestry");
    assert_eq!(ancestor_pids(&exit), ancestor_pids(&exec));
    assert!(exec["entry_leader"]["kind"].is_string() && exec["entry_leader"]["entity_id"].is_string(), "{exec}");
    assert!(exit.get("entry_leader").is_none());

    // The arguments, exactly: one per element, the one that is not UTF-8 also in hex.
    assert_eq!(
        exec["argv"],
        serde_json::json!(["sh", "-c", "sleep 0.4; exit 4", "chain-marker", "a b", "\u{fffd}z"]),
        "{exec}"
    );
    assert_eq!(exec["argv_hex"], serde_json::json!([null, null, null, null, null, "ff7a"]), "{exec}");
    assert_eq!(sleep_exec["argv"], serde_json::json!(["sleep", "0.4"]));
    assert!(sleep_exec.get("argv_hex").is_none());
    assert!(exec["exe"].as_str().is_some_and(|e| e.starts_with('/')) && exec["exe_deleted"] == false);
    let me_status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = me_status.lines().find(|l| l.starts_with("Uid:")).unwrap().split_whitespace().nth(1).unwrap();
    assert_eq!(exec["uid"].as_u64(), uid.parse().ok(), "{exec}");
    for key in ["euid", "gid", "egid", "sid", "pgid", "pid_ns", "mnt_ns", "cwd", "cgroup"] {
        assert!(!exec[key].is_null(), "{key} missing: {exec}");
    }
    assert_eq!(exec["nspid"], serde_json::json!([pid]));
    assert_eq!((exit["code"].as_u64(), exit["comm"].as_str()), (Some(4), Some("sh")));
}

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Runs a python script that execs `cat` from `how`; returns the exec line of the process.
fn exec_line_of(mon: &Running, script: &str) -> Value {
    let mut c =
        Command::new(python()).args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let pid = c.id() as i64;
    // The first exec is python's own; the one that names `cat` is the one wanted.
    let line = mon.wait_for(WAIT, |l| {
        json(l).is_some_and(|v| v["event"] == "exec" && v["pid"].as_i64() == Some(pid) && v["argv"][0] == "cat")
    });
    drop(c.stdin.take());
    c.wait().unwrap();
    json(&line.expect("the exec of cat")).unwrap()
}

#[test]
fn memfd_and_deleted_executables_are_flagged() {
    if !root_or_skip("memfd_and_deleted_executables_are_flagged") {
        return;
    }
    let mon = monitor(&["-e", "exec"]);
    let cat = std::fs::canonicalize("/bin/cat").unwrap();
    let memfd = format!(
        "import os\nfd = os.memfd_create('cnlink-cli-test', 0)\nos.write(fd, open({:?}, 'rb').read())\n\
         os.execve(fd, ['cat'], {{}})\n",
        cat.display().to_string()
    );
    let v = exec_line_of(&mon, &memfd);
    assert!(v["exe"].as_str().is_some_and(|e| e.starts_with("/memfd:cnlink-cli-test")), "{v}");
    assert_eq!((v["exe_memfd"].as_bool(), v["exe_deleted"].as_bool()), (Some(true), Some(true)), "{v}");

    let dir = std::env::temp_dir().join(format!("cnlink-cli-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("doomed-cat");
    std::fs::copy(&cat, &copy).unwrap();
    let deleted = format!(
        "import os\nfd = os.open({:?}, os.O_RDONLY)\nos.unlink({:?})\nos.execve(fd, ['cat'], {{}})\n",
        copy.display().to_string(),
        copy.display().to_string()
    );
    let v = exec_line_of(&mon, &deleted);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v["exe"].as_str(), Some(copy.to_str().unwrap()), "{v}");
    assert_eq!((v["exe_memfd"].as_bool(), v["exe_deleted"].as_bool()), (Some(false), Some(true)), "{v}");
    mon.interrupt();
    assert_eq!(mon.finish(WAIT).0, Some(0));
}

#[test]
fn a_reused_pid_never_shows_the_earlier_process() {
    if !root_or_skip("a_reused_pid_never_shows_the_earlier_process") {
        return;
    }
    let _lock = ns_last_pid_lock();
    let mon = monitor(&[]);
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let marker = "cnlink-cli-earlier-process";
    for attempt in 0..20 {
        let last: i32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
        let mut n = last + 300 + attempt * 50;
        if n >= pid_max - 10 {
            n = 2000 + attempt * 50;
        }
        let Some(mut a) = spawn_as(n, Command::new("sh").args(["-c", "sleep 0.3", marker])) else { continue };
        a.wait().unwrap();
        let first_exec = wait_event(&mon, "exec", n as i64);
        assert!(first_exec["argv"].as_array().unwrap().iter().any(|a| a == marker), "{first_exec}");
        let first_id = id(&first_exec, "entity_id");
        assert_eq!(id(&wait_event(&mon, "exit", n as i64), "entity_id"), first_id);
        let Some(mut b) = spawn_as(n, Command::new("sleep").arg("0.3")) else { continue };
        b.wait().unwrap();
        let lines = [
            wait_event(&mon, "fork", n as i64),
            wait_event(&mon, "exec", n as i64),
            wait_event(&mon, "exit", n as i64),
        ];
        let second_id = id(&lines[0], "entity_id");
        assert_ne!(second_id, first_id);
        for v in &lines {
            assert_eq!(id(v, "entity_id"), second_id, "{v}");
            assert!(!v.to_string().contains(marker), "the earlier process's argv leaked: {v}");
        }
        assert_eq!(lines[1]["argv"], serde_json::json!(["sleep", "0.3"]));
        mon.interrupt();
        assert_eq!(mon.finish(WAIT).0, Some(0));
        return;
    }
    panic!("pid reuse could not be forced in 20 attempts");
}
