//! `cnlink proc` views on the process table, end to end against the live kernel (root): the tree filters
//! (`--descendants-of`, `--exclude-descendants-of`, `--unit`, `--container`), `--format ecs` and `--tree`.

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_common::{json, root_or_skip, Running};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("cnlink-views-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child of the test, killed and reaped on drop if the test fails before it ends.
struct Reaped(Child);

impl Reaped {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn code(&mut self) -> Option<i32> {
        self.0.wait().unwrap().code()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A shell that polls (forking `sleep`s) until `go` exists, then runs `then`.
fn waiting_shell(go: &Path, then: &str) -> Reaped {
    let script = format!("while [ ! -e {} ]; do sleep 0.05; done; {then}", go.display());
    Reaped(Command::new("sh").args(["-c", &script]).spawn().unwrap())
}

/// Runs `true` until the monitor shows one (as `seen` recognises its pid): proof that events arrive.
fn ready(mon: &Running, seen: impl Fn(&str, i64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut marker = Command::new("true").spawn().unwrap();
        let pid = i64::from(marker.id());
        marker.wait().unwrap();
        if mon.wait_for(Duration::from_millis(500), |l| seen(l, pid)).is_some() {
            return;
        }
    }
    panic!("the monitor never showed a marker");
}

fn ecs_pid(l: &str) -> Option<i64> {
    json(l)?["process"]["pid"].as_i64()
}

#[test]
fn descendants_of_a_tree_are_shown_and_excluded_exactly() {
    if !root_or_skip("descendants_of_a_tree_are_shown_and_excluded_exactly") {
        return;
    }
    let dir = Scratch::new("desc");
    let go = dir.0.join("go");
    // The tree: the root runs a child that exits 5, and a daemon that double-forks away (reparented to init)
    // and exits 6 after its parent is gone.
    let mut root = waiting_shell(&go, "sh -c 'sleep 0.2; exit 5'; sh -c '(sleep 0.3; exit 6) &'; sleep 0.6; exit 0");
    let root_id = i64::from(root.id());
    let rootpid = root_id.to_string();
    let inside = Running::start(&["proc", "--format", "ecs", "-l", "--descendants-of", &rootpid, "-D", "60"]);
    let outside = Running::start(&[
        "proc",
        "--format",
        "json",
        "-l",
        "-e",
        "exec,exit",
        "--exclude-descendants-of",
        &rootpid,
        "-D",
        "60",
    ]);
    let tree = Running::start(&["proc", "--tree", "-c", "-l", "--descendants-of", &rootpid, "-D", "60"]);
    // Nothing but the tree passes the first filter: readiness is a line about one of the root's `sleep`s.
    assert!(inside.wait_for(Duration::from_secs(20), |l| json(l).is_some()).is_some(), "no line from the tree");
    ready(&outside, |l, pid| json(l).is_some_and(|v| v["pid"].as_i64() == Some(pid)));
    assert!(tree.wait_for(Duration::from_secs(20), |l| l.contains("sleep")).is_some(), "no tree line");
    // Markers started by the test (not below the root) while the tree runs.
    let mut markers = Vec::new();
    std::fs::write(&go, b"").unwrap();
    for _ in 0..5 {
        let mut m = Command::new("true").spawn().unwrap();
        markers.push(i64::from(m.id()));
        m.wait().unwrap();
    }
    assert_eq!(root.code(), Some(0));
    let exit = |code: i64| {
        move |l: &str| {
            json(l).is_some_and(|v| v["event"]["action"] == "exit" && v["process"]["exit_code"].as_i64() == Some(code))
        }
    };
    let five = inside.wait_for(Duration::from_secs(10), exit(5)).expect("the child's exit");
    let six = inside.wait_for(Duration::from_secs(10), exit(6)).expect("the reparented daemon's exit");
    let six = json(&six).unwrap();
    assert_ne!(six["process"]["parent"]["pid"].as_i64(), Some(root_id), "the daemon was reparented: {six}");
    let root_exit = inside.wait_for(Duration::from_secs(10), |l| {
        json(l).is_some_and(|v| v["event"]["action"] == "exit" && v["process"]["pid"].as_i64() == Some(root_id))
    });
    assert!(root_exit.is_some(), "the root's own exit");
    // The excluding monitor has seen past the tree's end once it shows a marker started now.
    ready(&outside, |l, pid| json(l).is_some_and(|v| v["pid"].as_i64() == Some(pid)));
    inside.interrupt();
    outside.interrupt();
    tree.interrupt();
    let (code, err, shown) = inside.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
    let (code, err, hidden) = outside.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");
    let (code, err, lines) = tree.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr: {err}");

    let tree_pids: std::collections::HashSet<i64> = shown.iter().filter_map(|l| ecs_pid(l)).collect();
    assert!(tree_pids.len() >= 4, "root, two children, the daemon and sleeps: {tree_pids:?}");
    for m in &markers {
        assert!(!tree_pids.contains(m), "a marker outside the tree passed --descendants-of: {m}");
    }
    let five = json(&five).unwrap();
    assert_eq!(five["process"]["parent"]["pid"].as_i64(), Some(root_id), "{five}");
    for l in &hidden {
        let v = json(l).unwrap();
        if let Some(pid) = v["pid"].as_i64() {
            assert!(!tree_pids.contains(&pid), "--exclude-descendants-of showed a process of the tree: {l}");
        }
    }
    // The tree view draws the exit-5 child's `sleep` below the child.
    let child = five["process"]["pid"].as_i64().unwrap();
    // Its only child is its `sleep` (found by the fork, which needs no /proc read however late the monitor is).
    let sleep = shown
        .iter()
        .filter_map(|l| json(l))
        .find(|v| v["event"]["action"] == "fork" && v["process"]["parent"]["pid"].as_i64() == Some(child));
    let sleep = sleep.expect("the child's fork of its sleep")["process"]["pid"].as_i64().unwrap();
    let line_of = |kind: &str, pid: i64| {
        let pid = pid.to_string();
        let l = lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(kind) && l.split_whitespace().nth(2) == Some(&pid));
        l.unwrap_or_else(|| panic!("no {kind} line of {pid}: {lines:#?}")).clone()
    };
    let (child_line, sleep_line) = (line_of("fork", child), line_of("fork", sleep));
    let below = match (child_line.find('└'), sleep_line.find('└')) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => b > a,
        _ => false,
    };
    assert!(below, "the sleep is not drawn below its parent:\n{child_line}\n{sleep_line}");
}

/// A cgroup `<root>/<slice>/<scope>` made by the test, removed on drop (once its processes are gone).
struct Cgroup(PathBuf);

impl Cgroup {
    /// `None` when this hierarchy cannot be written.
    fn make(root: &str, slice: &str, scope: &str) -> Option<Cgroup> {
        if !Path::new(root).join("cgroup.procs").exists() {
            return None;
        }
        let dir = Path::new(root).join(slice).join(scope);
        std::fs::create_dir_all(&dir).ok().map(|_| Cgroup(dir))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
        if let Some(slice) = self.0.parent() {
            let _ = std::fs::remove_dir(slice);
        }
    }
}

#[test]
fn unit_and_container_filters_match_a_process_in_a_test_cgroup() {
    if !root_or_skip("unit_and_container_filters_match_a_process_in_a_test_cgroup") {
        return;
    }
    let id = format!("{:064x}", 0x5ca1ab1e_u64 ^ u64::from(std::process::id()));
    let slice = format!("cnlink-views-{}.slice", std::process::id());
    let scope = format!("docker-{id}.scope");
    // The v2 hierarchy where there is one, else the v1 pids hierarchy (the path reported then).
    let Some(cg) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .into_iter()
        .find_map(|root| Cgroup::make(root, &slice, &scope))
    else {
        panic!("no cgroup hierarchy is writable here");
    };
    let dir = Scratch::new("unit");
    let (go0, go) = (dir.0.join("go0"), dir.0.join("go"));
    let by_unit = Running::start(&["proc", "--format", "ecs", "-l", "--unit", &scope, "-D", "60"]);
    let by_container =
        Running::start(&["proc", "--format", "ecs", "-l", "--container", &id[..12], "--unit", &slice, "-D", "60"]);
    // A shell that moves itself into the cgroup and polls (its `sleep`s, read at their exec, are in it: the
    // monitors are ready when they show one); then it execs a poller that exits 4. The poller's exec is read
    // from /proc while it waits, so its cgroup is known however far behind a loaded machine puts the monitors.
    let script = format!(
        "echo $$ > {}; while [ ! -e {} ]; do sleep 0.05; done; exec sh -c 'while [ ! -e {} ]; do sleep 0.05; done; exit 4'",
        cg.0.join("cgroup.procs").display(),
        go0.display(),
        go.display()
    );
    let mut shell = Reaped(Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap());
    for mon in [&by_unit, &by_container] {
        assert!(mon.wait_for(Duration::from_secs(20), |l| json(l).is_some()).is_some(), "nothing from the cgroup");
    }
    std::fs::write(&go0, b"").unwrap();
    let poller = |l: &str| {
        json(l).is_some_and(|v| {
            v["event"]["action"] == "exec" && v["process"]["command_line"].as_str().is_some_and(|c| c.contains("while"))
        })
    };
    for mon in [&by_unit, &by_container] {
        assert!(mon.wait_for(Duration::from_secs(20), poller).is_some(), "the poller's exec in the cgroup");
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(shell.code(), Some(4));
    let exit4 = |l: &str| {
        json(l).is_some_and(|v| v["event"]["action"] == "exit" && v["process"]["exit_code"].as_i64() == Some(4))
    };
    for mon in [&by_unit, &by_container] {
        assert!(mon.wait_for(Duration::from_secs(10), exit4).is_some(), "the exit of the process in the cgroup");
        mon.interrupt();
    }
    let mut all = Vec::new();
    for mon in [by_unit, by_container] {
        let (code, err, lines) = mon.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "stderr: {err}");
        all.extend(lines);
    }
    for l in &all {
        let v = json(l).unwrap();
        assert_eq!(v["container"]["id"], id, "a process outside the cgroup passed: {l}");
        assert_eq!(v["container"]["runtime"], "docker", "{l}");
        assert_eq!(v["cnlink"]["cgroup"]["unit"], scope, "{l}");
        assert_eq!(v["cnlink"]["cgroup"]["slice"], slice, "{l}");
    }
}

#[test]
fn tree_with_json_bad_containers_and_unknown_roots_are_refused() {
    let out = cli_common::cnlink().args(["proc", "--tree", "--format", "json", "-D", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tree is a text view"));
    let out = cli_common::cnlink().args(["proc", "--container", "xyz", "-D", "1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("hex digits"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli_common::cnlink().args(["proc", "--descendants-of", "0", "-D", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad process reference");
    if !root_or_skip("tree_with_json_bad_containers_and_unknown_roots_are_refused") {
        return;
    }
    // A pid that names no process (pid_max is at most 2^22).
    let out = cli_common::cnlink().args(["proc", "--descendants-of", "99999999", "-D", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no process with pid 99999999"), "{err}");
    // `cnlink record` takes the same options, and starts the same filters.
    let dir = Scratch::new("refused");
    let file = dir.0.join("r.pcapng");
    let out = cli_common::cnlink()
        .args(["record", file.to_str().unwrap(), "--descendants-of", "99999999", "-D", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no process with pid 99999999"), "{err}");
    // Without /proc there is no table to find a process's place in.
    let out = cli_common::cnlink().args(["proc", "--no-enrich", "--unit", "cron", "-D", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not with --no-enrich"), "{err}");
}

#[test]
fn a_short_lived_program_in_a_test_cgroup_is_placed_by_its_own_cgroup() {
    if !root_or_skip("a_short_lived_program_in_a_test_cgroup_is_placed_by_its_own_cgroup") {
        return;
    }
    let id = format!("{:064x}", 0x5407_11fe_u64 ^ u64::from(std::process::id()));
    let slice = format!("cnlink-short-{}.slice", std::process::id());
    let scope = format!("docker-{id}.scope");
    let Some(cg) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .into_iter()
        .find_map(|root| Cgroup::make(root, &slice, &scope))
    else {
        panic!("no cgroup hierarchy is writable here");
    };
    let dir = Scratch::new("short");
    let go = dir.0.join("go");
    // About 2 ms, and an argument no other process has.
    let nap = format!("0.002{:04}", std::process::id() % 10_000);
    let by_unit = Running::start(&["proc", "--format", "ecs", "-l", "-e", "exec,exit", "--unit", &scope, "-D", "60"]);
    let by_container =
        Running::start(&["proc", "--format", "ecs", "-l", "-e", "exec,exit", "--container", &id[..12], "-D", "60"]);
    // The shell moves itself into the cgroup after its exec (no event says so: the monitors still see it where it
    // was), polls with `sleep`s until told, then runs a `sleep` of 2 ms five times. Each is forked with the
    // shell's old cgroup and is gone before the monitor handles its batch (5 ms): only the receive thread's read
    // at its exec places it (that read is bounded and may come too late on a loaded machine, hence five).
    let script = format!(
        "echo $$ > {}; while [ ! -e {} ]; do sleep 0.05; done; for i in 1 2 3 4 5; do /bin/sleep {nap}; sleep 0.05; \
         done; exit 4",
        cg.0.join("cgroup.procs").display(),
        go.display()
    );
    let mut shell = Reaped(Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap());
    for mon in [&by_unit, &by_container] {
        assert!(mon.wait_for(Duration::from_secs(20), |l| json(l).is_some()).is_some(), "nothing from the cgroup");
    }
    std::fs::write(&go, b"").unwrap();
    assert_eq!(shell.code(), Some(4));
    let short = |l: &str| {
        json(l).is_some_and(|v| {
            v["event"]["action"] == "exec"
                && v["process"]["args"].as_array().is_some_and(|a| a.iter().any(|x| *x == *nap))
        })
    };
    for mon in [&by_unit, &by_container] {
        let exec = mon.wait_for(Duration::from_secs(10), short);
        let exec = json(&exec.expect("a short-lived program's exec, placed in the cgroup")).unwrap();
        assert_eq!(exec["process"]["executable"], "/usr/bin/sleep", "{exec}");
        let pid = exec["process"]["pid"].as_i64().unwrap();
        let exit = mon.wait_for(Duration::from_secs(10), |l| {
            json(l).is_some_and(|v| v["event"]["action"] == "exit" && v["process"]["pid"].as_i64() == Some(pid))
        });
        assert!(exit.is_some(), "the short-lived program's exit");
        mon.interrupt();
    }
    for mon in [by_unit, by_container] {
        let (code, err, lines) = mon.finish(Duration::from_secs(10));
        assert_eq!(code, Some(0), "stderr: {err}");
        for l in &lines {
            let v = json(l).unwrap();
            assert_eq!(v["container"]["id"], id, "a process outside the cgroup passed: {l}");
            assert_eq!(v["cnlink"]["cgroup"]["unit"], scope, "{l}");
        }
    }
}
