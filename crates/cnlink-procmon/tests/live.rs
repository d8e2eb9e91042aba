//! Live tests of the process model against the real `/proc`, cgroups, namespaces and proc connector.
//!
//! The proc connector is machine-wide and other tests run at the same time: every assertion is about this
//! test's own children, found by pid.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnlink_procmon::container::Runtime;
use cnlink_procmon::{
    CgroupInfo, EnrichStatus, EntityId, EntityIdSource, EntryLeaderKind, HostIdentity, LiveProc, ProcSource,
    ProcessTable, TableConfig, Wants,
};
use common::{argv_of, children_of, is_exec_of, is_exit_of, live_kernel, reap, Feeder};

const WAIT: Duration = Duration::from_secs(20);

/// Reads lines from `child`'s stdout until one equals `marker` (bounded by [`WAIT`]).
fn wait_marker(child: &mut std::process::Child, marker: &str) {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let want = marker.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line == want {
                let _ = tx.send(());
                break;
            }
        }
    });
    rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("no {marker:?} line from the child"));
}

/// Observes `pid` until `done` holds (bounded by [`WAIT`]).
fn observe_until(pid: i32, done: impl Fn(&cnlink_procmon::Observation) -> bool) -> cnlink_procmon::Observation {
    let mut proc = LiveProc::default();
    let deadline = Instant::now() + WAIT;
    loop {
        let o = proc.observe(pid, Wants::ALL);
        if done(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "never saw the expected /proc state of {pid}: {o:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_snapshot_holds_this_process() {
    let me = std::process::id() as i32;
    let mut proc = LiveProc::default();
    let snap = proc.snapshot(Wants::ALL);
    let o = snap.processes.iter().find(|o| o.pid == me).expect("this process in the snapshot");
    let stat = o.stat.as_ref().unwrap();
    assert_eq!(stat.ppid, rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get()));
    let s = o.status_fields.as_ref().unwrap();
    assert_eq!((s.ruid, s.euid), (rustix::process::getuid().as_raw(), rustix::process::geteuid().as_raw()));
    let argv: Vec<&[u8]> = o.argv.as_ref().unwrap().args().collect();
    let mine: Vec<Vec<u8>> = std::env::args_os().map(|a| a.as_bytes().to_vec()).collect();
    assert_eq!(argv, mine.iter().map(Vec::as_slice).collect::<Vec<_>>());
    // Seeded, it carries the id anyone can recompute from /proc.
    let host = HostIdentity::read().unwrap();
    let mut table = ProcessTable::new(host.clone(), TableConfig::default());
    table.seed(&snap);
    let p = table.get(me).unwrap();
    assert_eq!(
        (p.entity_id, p.entity_id_source),
        (EntityId::from_stat(&host, me, stat.start_ticks), EntityIdSource::Stat)
    );
    assert_eq!(p.parent_pid, stat.ppid);
    assert_eq!(table.ancestors(me, 64).last().map(|a| a.pid), Some(1));
}

#[test]
fn a_shell_chain_through_a_live_subscription() {
    if !live_kernel("a_shell_chain_through_a_live_subscription") {
        return;
    }
    let me = std::process::id() as i32;
    let feeder = Feeder::start();
    let mut child = Command::new("sh").args(["-c", "sh -c \"exec sleep 1\""]).spawn().expect("spawn sh");
    let root = child.id() as i32;
    // The sleep's exec: the program, its history and ancestry, while it runs.
    let mut sleeper = None;
    assert!(
        feeder.wait_for(WAIT, |s| {
            sleeper = s
                .records
                .iter()
                .find(|r| {
                    matches!(r.event.data, cnlink::wire::EventData::Exec { .. })
                        && argv_of(r) == ["sleep", "1"]
                        && r.ancestors.iter().chain(r.process.iter()).any(|a| a.pid == root)
                })
                .cloned();
            sleeper.is_some()
        }),
        "no exec of the sleep seen"
    );
    let exec = sleeper.unwrap();
    let sleep_pid = exec.process.as_ref().unwrap().pid;
    // The id equals what an independent reading of /proc derives, while the sleep still runs.
    let o = LiveProc::default().observe(sleep_pid, Wants::STAT);
    let host = HostIdentity::read().unwrap();
    assert_eq!(exec.entity_id, Some(EntityId::from_stat(&host, sleep_pid, o.start_ticks().expect("sleep alive"))));
    assert_eq!((exec.status, exec.entity_id_source), (EnrichStatus::Ok, Some(EntityIdSource::Stat)));
    let p = exec.process.as_ref().unwrap();
    assert!(p.program.exe.as_ref().unwrap().path.as_bytes().ends_with(b"/sleep"));
    assert!(p.exec_history.iter().any(|h| h.name == "sh"), "{:?}", p.exec_history);
    let pids: Vec<i32> = exec.ancestors.iter().map(|a| a.pid).collect();
    assert_eq!(pids.last(), Some(&1), "ancestry reaches init: {pids:?}");
    assert!(pids.contains(&me), "{pids:?}");
    let mine = exec.ancestors.iter().find(|a| a.pid == me).unwrap();
    assert_eq!(mine.entity_id, EntityId::from_stat(&host, me, mine.start_ticks.unwrap()));
    assert!(exec.entry_leader().is_some());
    child.wait().unwrap();
    assert!(feeder.wait_for(WAIT, |s| s.records.iter().any(|r| is_exit_of(r, root))), "no exit of the chain");
    // The fork that made the chain's first shell: linked to this process, with the snapshot's id for it.
    let recs = feeder.records_of(root);
    let fork = recs.iter().find(|r| matches!(r.event.data, cnlink::wire::EventData::Fork { .. })).unwrap();
    let g = feeder.shared.lock().unwrap();
    assert_eq!(fork.parent_entity_id, Some(g.table.get(me).unwrap().entity_id));
    assert!(g.table.children(me).iter().any(|c| c.pid == root));
    assert!(recs.iter().all(|r| r.entity_id == fork.entity_id), "one identity for the chain's root");
    if sleep_pid != root {
        assert_eq!(g.table.parent(sleep_pid).map(|p| p.pid), Some(root));
    }
}

#[test]
fn a_cron_job_has_a_cron_entry_leader() {
    if !live_kernel("a_cron_job_has_a_cron_entry_leader") {
        return;
    }
    // A shell named `cron` (the task name comes from the file name) runs a job, as cron's per-job child does.
    let dir = std::env::temp_dir().join(format!("cnlink-procmon-cron-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cron = dir.join("cron");
    let _ = std::fs::remove_file(&cron);
    std::os::unix::fs::symlink("/bin/sh", &cron).unwrap();
    let feeder = Feeder::start();
    let mut child = Command::new(&cron).args(["-c", "sh -c 'exec sleep 0.3'; true"]).spawn().unwrap();
    let root = child.id() as i32;
    let mut found = None;
    assert!(feeder.wait_for(WAIT, |s| {
        found = s
            .records
            .iter()
            .find(|r| argv_of(r) == ["sleep", "0.3"] && r.ancestors.iter().any(|a| a.pid == root))
            .cloned();
        found.is_some()
    }));
    let rec = found.unwrap();
    let leader = rec.entry_leader().unwrap().clone();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // The job is the process `cron` started (here the shell that exec'd the sleep).
    assert_eq!(leader.kind, EntryLeaderKind::Cron);
    let chain: Vec<_> = rec.process.iter().chain(rec.ancestors.iter()).collect();
    assert!(chain.iter().any(|p| p.pid == leader.pid && p.parent_pid == root), "{leader:?}");
}

#[test]
fn a_terminal_session_has_a_login_entry_leader() {
    if !live_kernel("a_terminal_session_has_a_login_entry_leader") {
        return;
    }
    // script(1) runs the shell as a session leader on a new pseudo-terminal.
    let feeder = Feeder::start();
    let mut child = Command::new("script")
        .args(["-qec", "sh -c 'exec sleep 0.3'", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let root = child.id() as i32;
    let mut found = None;
    assert!(feeder.wait_for(WAIT, |s| {
        found = s
            .records
            .iter()
            .find(|r| argv_of(r) == ["sleep", "0.3"] && r.ancestors.iter().any(|a| a.pid == root))
            .cloned();
        found.is_some()
    }));
    let rec = found.unwrap();
    let leader = rec.entry_leader().unwrap();
    child.wait().unwrap();
    assert_eq!(leader.kind, EntryLeaderKind::Login, "{leader:?}");
    let chain: Vec<_> = rec.process.iter().chain(rec.ancestors.iter()).collect();
    assert!(chain.iter().any(|a| a.pid == leader.pid && a.sid == a.pid && a.tty_nr != 0), "{leader:?}");
}

/// Creates `dir` (a cgroup), runs a shell that moves itself in, and returns its observation; `None` when this
/// hierarchy cannot be written.
fn run_in_cgroup(dir: &std::path::Path) -> Option<(cnlink_procmon::Observation, i32)> {
    std::fs::create_dir_all(dir).ok()?;
    let procs = dir.join("cgroup.procs");
    let script = format!("echo $$ > '{}' && echo ready && exec cat", procs.display());
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    let ok = BufReader::new(out).read_line(&mut line).is_ok() && line.trim() == "ready";
    let obs = ok.then(|| LiveProc::default().observe(pid, Wants::ALL));
    drop(child.stdin.take());
    reap(child);
    // The cgroup can be removed once its process is reaped.
    let mut d = Some(dir);
    while let Some(p) = d {
        if std::fs::remove_dir(p).is_err() || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("cnlink-"))
        {
            break;
        }
        d = p.parent();
    }
    obs.map(|o| (o, pid))
}

#[test]
fn a_process_in_a_test_cgroup_is_attributed_to_it() {
    if !live_kernel("a_process_in_a_test_cgroup_is_attributed_to_it") {
        return;
    }
    let id = format!("{:064x}", 0xc0ffee_u64 ^ u64::from(std::process::id()));
    let name = format!("cnlink-procmon-{}", std::process::id());
    let mut worked = 0;
    for (root, v2) in [("/sys/fs/cgroup/unified", true), ("/sys/fs/cgroup/pids", false)] {
        if !std::path::Path::new(root).join("cgroup.procs").exists() {
            continue;
        }
        let dir = std::path::Path::new(root).join(&name).join(format!("docker-{id}.scope"));
        let Some((o, pid)) = run_in_cgroup(&dir) else {
            eprintln!("{root}: not writable here");
            continue;
        };
        let file = o.cgroup.as_ref().expect("cgroup read");
        let info = CgroupInfo::parse(&file.bytes, file.truncated, 64);
        let want = format!("/{name}/docker-{id}.scope");
        assert_eq!(info.path.to_str_lossy(), want, "{root}: {info:?}");
        assert!(if v2 { info.v2 } else { info.v1 });
        let c = info.class.container.expect("a docker scope is a container");
        assert_eq!((c.runtime, &*c.id), (Runtime::Docker, id.as_str()));
        // Through the table: the snapshot's process carries it.
        let mut table = ProcessTable::new(HostIdentity::new("h", "b"), TableConfig::default());
        table.seed(&cnlink_procmon::Snapshot { ticks_per_second: LiveProc::ticks_per_second(), processes: vec![o] });
        assert_eq!(table.get(pid).unwrap().container().map(|c| c.runtime), Some(Runtime::Docker));
        worked += 1;
    }
    assert!(worked > 0, "no cgroup hierarchy was writable");
}

#[test]
fn a_pid_namespace_gives_two_nspid_levels_and_a_container_leader() {
    if !live_kernel("a_pid_namespace_gives_two_nspid_levels_and_a_container_leader") {
        return;
    }
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "sh", "-c", "echo ready; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare from util-linux");
    wait_marker(&mut unshare, "ready");
    let inner = *children_of(unshare.id()).first().expect("unshare's child");
    let o = observe_until(inner, |o| o.exe.as_ref().is_some_and(|e| e.path.ends_with(b"/cat")));
    let nspid = o.status_fields.as_ref().unwrap().nspid.clone();
    let mine = LiveProc::default().observe(std::process::id() as i32, Wants::ALL);
    let mut table = ProcessTable::new(HostIdentity::new("h", "b"), TableConfig::default());
    table.seed(&LiveProc::default().snapshot(Wants::ALL));
    let leader = table.get(inner).and_then(|p| p.entry_leader.clone());
    unshare.stdin.take().unwrap().flush().ok();
    reap(unshare);
    assert_eq!(nspid, [inner, 1]);
    assert_ne!(o.pid_ns, mine.pid_ns);
    assert_eq!(o.mnt_ns, mine.mnt_ns);
    let leader = leader.unwrap();
    assert_eq!((leader.pid, leader.kind), (inner, EntryLeaderKind::Container));
}

fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn memfd_and_deleted_executables_are_flagged() {
    let cat = std::fs::canonicalize("/bin/cat").unwrap();
    // A copy of cat, run, then unlinked.
    let dir = std::env::temp_dir().join(format!("cnlink-procmon-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("doomed-cat");
    std::fs::copy(&cat, &copy).unwrap();
    let c = Command::new(&copy).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let pid = c.id() as i32;
    observe_until(pid, |o| o.exe.as_ref().is_some_and(|e| e.path == copy.as_os_str().as_bytes()));
    std::fs::remove_dir_all(&dir).unwrap();
    let o = observe_until(pid, |o| o.exe.as_ref().is_some_and(|e| e.deleted));
    reap(c);
    let e = o.exe.unwrap();
    assert_eq!((e.path.as_slice(), e.memfd), (copy.as_os_str().as_bytes(), false));

    // cat copied into a memfd and exec'd from it.
    let script = format!(
        "import os\nfd = os.memfd_create('cnlink-test', 0)\nos.write(fd, open({:?}, 'rb').read())\n\
         os.execve(fd, ['cat'], {{}})\n",
        cat.display().to_string()
    );
    let c = Command::new(python()).args(["-c", &script]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let pid = c.id() as i32;
    let o = observe_until(pid, |o| {
        o.exe.as_ref().is_some_and(|e| e.memfd) && o.argv.as_ref().is_some_and(|a| a.args().eq([&b"cat"[..]]))
    });
    reap(c);
    let e = o.exe.unwrap();
    assert!(e.path.starts_with(b"/memfd:cnlink-test"), "{:?}", String::from_utf8_lossy(&e.path));
    assert!(e.deleted, "the kernel marks memfds deleted");
}

/// Holds the machine-wide lock around `ns_last_pid` use (other tests may fork at the same time).
struct NsLastPidLock(#[allow(dead_code)] std::fs::File);

impl NsLastPidLock {
    fn take() -> NsLastPidLock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/cnlink-ns_last_pid.lock")
            .unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
        NsLastPidLock(f)
    }
}

/// Spawns `cmd` as pid `want` (writing `want - 1` to `ns_last_pid` first); `None` if another process took
/// the pid first.
fn spawn_as(want: i32, cmd: &mut Command) -> Option<std::process::Child> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (want - 1).to_string()).unwrap();
    let c = cmd.spawn().unwrap();
    if c.id() as i32 == want {
        Some(c)
    } else {
        reap(c);
        None
    }
}

#[test]
fn forced_pid_reuse_never_shows_the_earlier_process() {
    if !live_kernel("forced_pid_reuse_never_shows_the_earlier_process") {
        return;
    }
    let _lock = NsLastPidLock::take();
    let feeder = Feeder::start();
    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let marker = "cnlink-first-process-marker";
    let mut first_id = None;
    let mut second = None;
    for attempt in 0..20 {
        let last: i32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").unwrap().trim().parse().unwrap();
        let mut n = last + 200 + attempt * 50;
        if n >= pid_max - 10 {
            n = 1000 + attempt * 50;
        }
        let Some(mut a) = spawn_as(n, Command::new("sh").args(["-c", "sleep 0.3; exit 0", marker])) else { continue };
        // The first process's exec was read while it ran.
        let seen = feeder
            .wait_for(WAIT, |s| s.records.iter().any(|r| is_exec_of(r, n) && argv_of(r).iter().any(|x| x == marker)));
        a.wait().unwrap();
        assert!(seen, "the first process's exec was not seen with its argv");
        assert!(feeder.wait_for(WAIT, |s| s.records.iter().any(|r| is_exit_of(r, n))));
        let recs = feeder.records_of(n);
        let id = recs.iter().find(|r| is_exit_of(r, n)).unwrap().entity_id;
        {
            let g = feeder.shared.lock().unwrap();
            assert_eq!(g.table.lookup(n).map(|p| p.entity_id), id, "the exited process is kept");
        }
        let Some(mut b) = spawn_as(n, Command::new("sleep").arg("0.3")) else { continue };
        let second_exec = |r: &cnlink_procmon::ProcRecord| is_exec_of(r, n) && argv_of(r) == ["sleep", "0.3"];
        assert!(feeder.wait_for(WAIT, |s| s.records.iter().any(second_exec)));
        let lookup = feeder.shared.lock().unwrap().table.lookup(n).map(|p| p.entity_id);
        b.wait().unwrap();
        assert!(feeder.wait_for(WAIT, |s| s.records.iter().filter(|r| is_exit_of(r, n)).count() == 2));
        first_id = id;
        second = Some((n, lookup));
        break;
    }
    let (n, lookup) = second.expect("pid reuse could not be forced in 20 attempts");
    let first_id = first_id.unwrap();
    let recs = feeder.records_of(n);
    let later: Vec<_> = recs.iter().filter(|r| r.entity_id != Some(first_id)).collect();
    // Fork, exec and exit of the second process, all with its own id.
    assert!(later.len() >= 3, "{} records of the second process", later.len());
    let second_id = later[0].entity_id.unwrap();
    assert_eq!(lookup, Some(second_id));
    for r in &later {
        assert_eq!(r.entity_id, Some(second_id));
        let p = r.process.as_ref().unwrap();
        assert!(!argv_of(r).iter().any(|a| a == marker), "the earlier argv leaked: {:?}", argv_of(r));
        let leaked =
            |h: &cnlink_procmon::Program| h.argv.as_ref().is_some_and(|a| a.args().any(|x| x == marker.as_bytes()));
        assert!(!p.exec_history.iter().any(leaked));
    }
    let exit = later.iter().find(|r| is_exit_of(r, n)).unwrap();
    assert_eq!(argv_of(exit), ["sleep", "0.3"]);
    assert!(exit.process.as_ref().unwrap().program.exe.as_ref().unwrap().path.as_bytes().ends_with(b"/sleep"));
}
