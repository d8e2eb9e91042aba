//! Deterministic tests of the table, with a simulated `/proc` and simulated time (100 ticks a second, boot and
//! monotonic clocks equal).

use cnlink::wire::EventData;

use super::*;
use crate::fake::*;
use crate::procfs::parse::{parse_cmdline, parse_stat};
use crate::procfs::{CgroupFile, EnrichStatus, Exe, PathRead, ProcSource, StatusFields};

fn argv(p: &ProcessInfo) -> Vec<String> {
    p.program.argv.as_ref().map_or(Vec::new(), |a| a.args().map(|x| String::from_utf8_lossy(x).into()).collect())
}

#[test]
fn fork_exec_exit_keep_the_tree() {
    let (mut t, mut fake) = machine();
    // bash forks 200: the child runs bash until it execs.
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    let f = t.handle(&fork(2 * TICK, 100, 200), &mut fake);
    let child = f.process.clone().unwrap();
    assert_eq!((child.pid, child.parent_pid, &*child.program.name.to_str_lossy()), (200, 100, "bash"));
    assert_eq!(f.entity_id, Some(EntityId::from_stat(&host(), 200, 2)));
    assert_eq!(f.entity_id_source, Some(EntityIdSource::Stat));
    assert_eq!(f.parent_entity_id, Some(EntityId::from_stat(&host(), 100, 1)));
    assert_eq!(t.children(100).iter().map(|c| c.pid).collect::<Vec<_>>(), [200]);
    // It execs sleep.
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "sleep", &["sleep", "1"]).obs());
    let e = t.handle(&exec(2 * TICK + MS, 200), &mut fake);
    let p = e.process.clone().unwrap();
    assert_eq!(argv(&p), ["sleep", "1"]);
    assert_eq!(p.exec_history.len(), 1);
    assert_eq!(p.exec_history[0].name, "bash");
    assert_eq!(p.exec_count, 1);
    assert_eq!(e.previous.as_ref().map(|p| argv(p)), Some(vec!["bash".to_string()]));
    assert_eq!(e.entity_id, f.entity_id, "exec keeps the identity");
    assert_eq!(e.ancestors.iter().map(|a| a.pid).collect::<Vec<_>>(), [100, 1]);
    assert_eq!(e.status, EnrichStatus::Ok);
    // It exits; the record still has everything, and the lifetime.
    let x = t.handle(&exit(5 * TICK, 200, 200, 100), &mut fake);
    assert_eq!(argv(x.process.as_ref().unwrap()), ["sleep", "1"]);
    assert_eq!(x.lifetime_ns, Some(3 * TICK));
    assert_eq!(x.ancestors.len(), 2);
    assert!(t.get(200).is_none());
    assert_eq!(t.lookup(200).map(|p| p.entity_id), f.entity_id, "kept for late thread exits");
}

#[test]
fn threads_are_members_of_their_group() {
    let (mut t, mut fake) = machine();
    let r = t.handle(&thread(3 * TICK, 100, 101), &mut fake);
    assert_eq!((r.tid, r.entity_id), (Some(101), Some(EntityId::from_stat(&host(), 100, 1))));
    assert_eq!(t.threads(100), 1);
    let reads = fake.reads;
    let x = t.handle(&exit(4 * TICK, 101, 100, 1), &mut fake);
    assert_eq!((x.tid, x.lifetime_ns), (Some(101), Some(TICK)));
    assert_eq!(t.threads(100), 0);
    assert_eq!(fake.reads, reads, "threads cost no /proc reads");
    // A thread's exit after its leader's still names the process.
    t.handle(&thread(5 * TICK, 100, 102), &mut fake);
    t.handle(&exit(6 * TICK, 100, 100, 1), &mut fake);
    let late = t.handle(&exit(6 * TICK + 1, 102, 100, 1), &mut fake);
    assert_eq!(late.process.unwrap().program.name, "bash");
}

#[test]
fn forced_pid_reuse_never_mixes_processes() {
    let (mut t, mut fake) = machine();
    // First process with pid 300.
    fake.procs.insert(300, P::new(300, 100, 10 * TICK, "secret", &["secret", "--token=abc"]).obs());
    let f1 = t.handle(&fork(10 * TICK, 100, 300), &mut fake);
    let e1 = t.handle(&exec(10 * TICK + MS, 300), &mut fake);
    assert_eq!(argv(e1.process.as_ref().unwrap()), ["secret", "--token=abc"]);
    t.handle(&exit(11 * TICK, 300, 300, 100), &mut fake);
    fake.procs.remove(&300);
    // The pid is reused by a second process; before its exec the table must not show the first one's data.
    fake.procs.insert(300, P::new(300, 100, 20 * TICK, "bash", &["bash"]).obs());
    let f2 = t.handle(&fork(20 * TICK, 100, 300), &mut fake);
    assert_ne!(f2.entity_id, f1.entity_id);
    assert_eq!(f2.process.as_ref().unwrap().program.name, "bash");
    fake.procs.insert(300, P::new(300, 100, 20 * TICK, "ls", &["ls"]).obs());
    let e2 = t.handle(&exec(20 * TICK + MS, 300), &mut fake);
    let x2 = t.handle(&exit(21 * TICK, 300, 300, 100), &mut fake);
    for r in [&f2, &e2, &x2] {
        let p = r.process.as_ref().unwrap();
        assert_eq!(r.entity_id, f2.entity_id);
        assert!(!argv(p).iter().any(|a| a.contains("token")), "{:?}", argv(p));
        assert!(p.exec_history.iter().all(|h| h.name != "secret"));
    }
    assert_eq!(t.lookup(300).unwrap().entity_id, f2.entity_id.unwrap());
}

#[test]
fn an_observation_of_a_later_process_is_not_used() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(400, P::new(400, 100, 30 * TICK, "bash", &["bash"]).obs());
    let f = t.handle(&fork(30 * TICK, 100, 400), &mut fake);
    // The exec'ing process is gone and the pid already reused when /proc is read.
    fake.procs.insert(400, P::new(400, 1, 40 * TICK, "other", &["other", "--private"]).obs());
    let e = t.handle(&exec(30 * TICK + MS, 400), &mut fake);
    let p = e.process.unwrap();
    assert_eq!((e.status, e.entity_id), (EnrichStatus::PidReused, f.entity_id));
    assert!(p.program.argv.is_none() && p.program.name.is_empty() && p.program.exe.is_none());
    // Gone before the read: the new program is unknown, never the parent's.
    fake.procs.insert(401, P::new(401, 100, 31 * TICK, "bash", &["bash"]).obs());
    t.handle(&fork(31 * TICK, 100, 401), &mut fake);
    fake.procs.remove(&401);
    let e = t.handle(&exec(31 * TICK + MS, 401), &mut fake);
    assert_eq!(e.status, EnrichStatus::Gone);
    assert!(e.process.unwrap().program.name.is_empty());
    assert_eq!(t.stats().pid_reused, 1);
}

#[test]
fn fork_children_gone_before_the_read_get_a_fork_event_id() {
    let (mut t, mut fake) = machine();
    let f = t.handle(&fork(50 * TICK, 100, 500), &mut fake);
    assert_eq!(f.entity_id_source, Some(EntityIdSource::ForkEvent));
    let ev = fork(50 * TICK, 100, 500);
    assert_eq!(f.entity_id, Some(EntityId::from_fork_event(&host(), 500, ev.cpu, ev.seq, ev.timestamp_ns)));
    // It still inherits the parent's data: a fork copies the parent.
    assert_eq!(f.process.unwrap().program.name, "bash");
    // A start time that does not fit the fork (a later process) is not used either.
    fake.procs.insert(501, P::new(501, 100, 90 * TICK, "x", &["x"]).obs());
    let f = t.handle(&fork(51 * TICK, 100, 501), &mut fake);
    assert_eq!(f.entity_id_source, Some(EntityIdSource::ForkEvent));
}

#[test]
fn reuse_within_one_tick_still_gets_a_new_id() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(600, P::new(600, 100, 60 * TICK, "a", &["a"]).obs());
    let f1 = t.handle(&fork(60 * TICK, 100, 600), &mut fake);
    t.handle(&exit(60 * TICK + MS, 600, 600, 100), &mut fake);
    let f2 = t.handle(&fork(60 * TICK + 2 * MS, 100, 600), &mut fake);
    assert_eq!(f1.entity_id_source, Some(EntityIdSource::Stat));
    assert_eq!(f2.entity_id_source, Some(EntityIdSource::ForkEvent));
    assert_ne!(f1.entity_id, f2.entity_id);
}

#[test]
fn a_missed_exit_is_repaired_by_the_next_fork_or_after_a_loss() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(700, P::new(700, 100, 70 * TICK, "old", &["old"]).obs());
    let old = t.handle(&fork(70 * TICK, 100, 700), &mut fake).entity_id;
    // Its exit is lost; the pid is reused by a fork.
    fake.procs.insert(700, P::new(700, 100, 80 * TICK, "new", &["new"]).obs());
    let new = t.handle(&fork(80 * TICK, 100, 700), &mut fake);
    assert_ne!(new.entity_id, old);
    assert_eq!(t.stats().stale_replaced, 1);
    // Lost events, and pid 700 is another process again: the next event about it notices.
    t.note_loss();
    fake.procs.insert(700, P::new(700, 1, 90 * TICK, "third", &["third"]).obs());
    let u =
        t.handle(&ev(95 * TICK, EventData::Uid { process_pid: 700, process_tgid: 700, ruid: 0, euid: 0 }), &mut fake);
    assert_eq!(u.entity_id, Some(EntityId::from_stat(&host(), 700, 90)));
    assert_eq!(u.process.unwrap().program.name, "third");
}

#[test]
fn changes_keep_the_previous_value() {
    let (mut t, mut fake) = machine();
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"w\x1bk\n");
    let c = t.handle(&ev(TICK * 3, EventData::Comm { process_pid: 100, process_tgid: 100, comm }), &mut fake);
    assert_eq!(c.process.as_ref().unwrap().program.name.as_bytes(), b"w\x1bk\n");
    assert_eq!(c.process.as_ref().unwrap().program.name.to_string(), "w\\x1bk\\x0a");
    assert_eq!(c.previous.unwrap().program.name, "bash");
    let u =
        t.handle(&ev(TICK * 4, EventData::Uid { process_pid: 100, process_tgid: 100, ruid: 0, euid: 5 }), &mut fake);
    assert_eq!((u.process.as_ref().unwrap().creds.euid, u.previous.unwrap().creds.euid), (Some(5), Some(1000)));
    let s = t.handle(&ev(TICK * 5, EventData::Sid { process_pid: 100, process_tgid: 100 }), &mut fake);
    let p = s.process.unwrap();
    assert_eq!((p.sid, p.pgid, p.tty_nr), (100, 100, 0));
    // A thread's rename leaves the process's name.
    let c =
        t.handle(&ev(TICK * 6, EventData::Comm { process_pid: 101, process_tgid: 100, comm: [b'x'; 16] }), &mut fake);
    assert_eq!((c.tid, c.process.unwrap().program.name.as_bytes()), (Some(101), &b"w\x1bk\n"[..]));
}

#[test]
fn reparenting_follows_the_kernel_and_exited_parents_stay_for_ancestry() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(800, P::new(800, 100, 80 * TICK, "daemon", &["daemon"]).obs());
    fake.procs.insert(801, P::new(801, 800, 80 * TICK, "daemon", &["daemon"]).obs());
    t.handle(&fork(80 * TICK, 100, 800), &mut fake);
    t.handle(&fork(80 * TICK + MS, 800, 801), &mut fake);
    // The parent exits: the child's ancestry still shows it.
    t.handle(&exit(81 * TICK, 800, 800, 100), &mut fake);
    assert_eq!(t.ancestors(801, 8).iter().map(|a| a.pid).collect::<Vec<_>>(), [800, 100, 1]);
    // Push the parent out of the recent-exit ring: it is still kept for the child.
    for i in 0..5000 {
        t.handle(&fork(82 * TICK, 100, 10_000 + i), &mut fake);
        t.handle(&exit(82 * TICK, 10_000 + i, 10_000 + i, 100), &mut fake);
    }
    assert_eq!(t.parent(801).map(|p| p.pid), Some(800));
    // The child's exit says the kernel reparented it to init.
    let x = t.handle(&exit(90 * TICK, 801, 801, 1), &mut fake);
    assert_eq!((x.parent.as_ref().map(|p| p.pid), x.process.as_ref().unwrap().parent_pid), (Some(1), 1));
    assert_eq!(x.ancestors.iter().map(|a| a.pid).collect::<Vec<_>>(), [1]);
    // Nothing needs the exited parent any more: it is gone, and the table stays small.
    assert!(t.lookup(800).is_none());
    assert!(t.stats().exited <= TableConfig::default().recent_exits + 1);
}

#[test]
fn ancestors_depth_is_configurable() {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["init"]).obs());
    fake.procs.insert(3, P::new(3, 1, TICK, "sh", &["sh"]).obs());
    for pid in 4..13 {
        fake.procs.insert(pid, P::new(pid, pid - 1, TICK, "sh", &["sh"]).obs());
    }
    let mut t = ProcessTable::new(host(), TableConfig { ancestor_depth: 3, ..TableConfig::default() });
    t.seed(&fake.snapshot(Wants::ALL));
    let e = t.handle(&exec(2 * TICK, 12), &mut fake);
    assert_eq!(e.ancestors.iter().map(|a| a.pid).collect::<Vec<_>>(), [11, 10, 9]);
    assert_eq!(t.ancestors(12, 100).len(), 10);
    // The entry leader is found beyond the ancestor depth.
    assert_eq!(e.entry_leader().map(|l| (l.pid, l.kind)), Some((1, EntryLeaderKind::Init)));
}

/// Seeds `procs` (plus init) and returns the entry leader of `pid` as (pid, kind).
fn leader(procs: Vec<P>, pid: i32) -> Option<(i32, EntryLeaderKind)> {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["init"]).obs());
    fake.procs.insert(2, P { kthread: true, ..P::new(2, 0, 0, "kthreadd", &[]) }.obs());
    for p in procs {
        fake.procs.insert(p.pid, p.obs());
    }
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    t.get(pid)?.entry_leader.as_ref().map(|l| (l.pid, l.kind))
}

#[test]
fn entry_leader_rules() {
    use EntryLeaderKind::*;
    let sh = |pid, ppid| P::new(pid, ppid, TICK, "sh", &["sh"]);
    // cron: the job under cron's per-job child.
    let procs = vec![P::new(10, 1, 0, "cron", &["cron"]), P::new(11, 10, 0, "cron", &["cron"]), sh(12, 11), sh(13, 12)];
    assert_eq!(leader(procs, 13), Some((12, Cron)));
    // login: sshd's child shell, or a terminal's session leader.
    let procs = vec![P::new(10, 1, 0, "sshd", &["sshd"]), P::new(11, 10, 0, "sshd", &["sshd"]), sh(12, 11), sh(13, 12)];
    assert_eq!(leader(procs, 13), Some((12, Login)));
    let procs = vec![P::new(20, 1, 0, "tmux", &["tmux"]), P { sid: 21, tty: 34816, ..sh(21, 20) }, sh(22, 21)];
    assert_eq!(leader(procs, 22), Some((21, Login)));
    // systemd unit: the first process in a service's cgroup; a session scope is a login.
    let unit = P { cgroup: "0::/system.slice/nginx.service\n", ..P::new(30, 1, 0, "nginx", &["nginx"]) };
    let worker = P { cgroup: "0::/system.slice/nginx.service\n", ..P::new(31, 30, 0, "nginx", &["nginx"]) };
    assert_eq!(leader(vec![unit, worker], 31), Some((30, SystemdUnit)));
    let scope = P { cgroup: "0::/user.slice/user-1000.slice/session-4.scope\n", ..sh(40, 1) };
    assert_eq!(leader(vec![scope], 40), Some((40, Login)));
    // container: a pid namespace's init, or the first process in a container's cgroup.
    let ns_init = P { nspid: vec![50, 1], ..sh(50, 1) };
    let inside = P { nspid: vec![51, 2], ..sh(51, 50) };
    assert_eq!(leader(vec![ns_init, inside], 51), Some((50, Container)));
    let cg = "0::/system.slice/docker-7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8.scope\n";
    let shim = P::new(60, 1, 0, "containerd-shim", &["containerd-shim"]);
    assert_eq!(
        leader(vec![shim, P { cgroup: cg, ..sh(61, 60) }, P { cgroup: cg, ..sh(62, 61) }], 62),
        Some((61, Container))
    );
    // kernel threads and their helpers; init; an unknown parent.
    let helper = P::new(70, 2, 0, "modprobe", &["modprobe"]);
    assert_eq!(leader(vec![helper], 70), Some((2, Kthread)));
    assert_eq!(leader(vec![sh(80, 1)], 80), Some((1, Init)));
    assert_eq!(leader(vec![sh(90, 12345)], 90), Some((90, Unknown)));
}

#[test]
fn exec_computes_the_leader_and_fork_inherits_it() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(900, P::new(900, 100, 90 * TICK, "bash", &["bash"]).obs());
    let f = t.handle(&fork(90 * TICK, 100, 900), &mut fake);
    assert_eq!(f.entry_leader().map(|l| l.kind), Some(EntryLeaderKind::Init));
    // It becomes a cron: children that exec get a cron leader.
    fake.procs.insert(900, P::new(900, 100, 90 * TICK, "cron", &["cron"]).obs());
    t.handle(&exec(90 * TICK + MS, 900), &mut fake);
    fake.procs.insert(901, P::new(901, 900, 91 * TICK, "cron", &["cron"]).obs());
    t.handle(&fork(91 * TICK, 900, 901), &mut fake);
    fake.procs.insert(901, P::new(901, 900, 91 * TICK, "sh", &["sh", "-c", "job"]).obs());
    let e = t.handle(&exec(91 * TICK + MS, 901), &mut fake);
    let l = e.entry_leader().unwrap();
    assert_eq!((l.pid, l.kind, l.entity_id), (901, EntryLeaderKind::Cron, e.entity_id.unwrap()));
}

#[test]
fn a_thread_exec_revives_the_process_after_its_leader_exit() {
    let (mut t, mut fake) = machine();
    t.handle(&thread(3 * TICK, 100, 150), &mut fake);
    // de_thread: the old leader's exit, the other thread's, then the exec under the leader's pid.
    t.handle(&exit(4 * TICK, 100, 100, 1), &mut fake);
    fake.procs.insert(100, P::new(100, 1, TICK, "python3", &["python3"]).obs());
    let e = t.handle(&exec(4 * TICK + 1, 100), &mut fake);
    assert_eq!((e.entity_id, e.status), (Some(EntityId::from_stat(&host(), 100, 1)), EnrichStatus::Ok));
    assert_eq!(t.get(100).unwrap().program.name, "python3");
}

#[test]
fn unknown_processes_are_read_or_given_an_event_id() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(1000, P::new(1000, 100, 5 * TICK, "late", &["late"]).obs());
    let c =
        t.handle(&ev(6 * TICK, EventData::Gid { process_pid: 1000, process_tgid: 1000, rgid: 1, egid: 1 }), &mut fake);
    assert_eq!(c.entity_id, Some(EntityId::from_stat(&host(), 1000, 5)));
    assert_eq!(c.parent.unwrap().pid, 100);
    let x = t.handle(&exit(7 * TICK, 1001, 1001, 1), &mut fake);
    assert_eq!((x.entity_id_source, x.status), (Some(EntityIdSource::Event), EnrichStatus::Gone));
    assert!(t.lookup(1001).is_none());
    assert_eq!(t.handle(&ev(1, EventData::Ack { err: 0 }), &mut fake).entity_id, None);
}

#[test]
fn exec_history_and_table_are_bounded() {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["init"]).obs());
    let cfg = TableConfig { max_processes: 256, recent_exits: 32, exec_history: 2, ..TableConfig::default() };
    let mut t = ProcessTable::new(host(), cfg);
    t.seed(&fake.snapshot(Wants::ALL));
    for n in 0..5 {
        t.handle(&exec(TICK + n, 1), &mut fake);
    }
    let init = t.get(1).unwrap();
    assert_eq!((init.exec_history.len(), init.exec_count), (2, 5));
    // Live processes beyond the bound: evicted and counted, never more than the bound.
    for pid in 2..1000 {
        t.handle(&fork(2 * TICK, 1, pid), &mut fake);
        assert!(t.stats().live + t.stats().exited <= 256);
    }
    assert!(t.stats().evicted > 0);
    // A storm of threads that come and go holds nothing.
    for tid in 5000..105_000 {
        t.handle(&thread(3 * TICK, 1, tid), &mut fake);
        t.handle(&exit(3 * TICK, tid, 1, 0), &mut fake);
    }
    assert_eq!(t.stats().threads, 0);
}

/// `n` synthetic processes from pid `first` on, with realistic sizes: a 200-byte command line, a 180-byte cgroup
/// file shared by groups of ten, a few distinct executables and working directories.
fn synthetic(first: i32, n: usize) -> Snapshot {
    let exes = ["/usr/bin/python3.11", "/usr/sbin/nginx", "/usr/bin/bash", "/usr/lib/jvm/java-17/bin/java"];
    let processes = (first..first + n as i32)
        .map(|pid| {
            let i = pid - first;
            let stat = format!("{pid} (worker-{}) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0", i % 97, pid);
            let mut cmd = format!("/usr/bin/python3.11\0-m\0app.worker\0--id={pid}\0--config=/etc/app/").into_bytes();
            cmd.extend(std::iter::repeat_n(b'x', 120));
            cmd.push(0);
            let cgroup = format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{:08x}_1f2c_11e9_b015_1ebee232acfa.slice/cri-containerd-{:064x}.scope\n",
                pid / 50,
                pid / 10
            );
            Observation {
                pid,
                status: EnrichStatus::Ok,
                boot_offset_ns: 0,
                stat: parse_stat(stat.as_bytes()),
                argv: Some(parse_cmdline(&cmd, 1024, 32 * 1024, false)),
                exe: Some(Exe {
                    path: exes[pid as usize % 4].as_bytes().to_vec(),
                    deleted: false,
                    memfd: false,
                    truncated: false,
                }),
                cwd: Some(PathRead { path: format!("/srv/app/{}", pid % 10).into_bytes(), truncated: false }),
                status_fields: Some(StatusFields { ruid: 1000, euid: 1000, rgid: 1000, egid: 1000, nspid: vec![pid] }),
                cgroup: Some(CgroupFile { bytes: cgroup.into_bytes(), truncated: false }),
                pid_ns: Some(1),
                mnt_ns: Some(2),
            }
        })
        .collect();
    Snapshot { ticks_per_second: 100, processes }
}

#[test]
#[cfg_attr(miri, ignore = "slow under miri")]
fn a_hundred_thousand_processes_fit_in_200_mib() {
    let n = 100_000;
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&synthetic(1000, n));
    assert_eq!(t.stats().live, n);
    let m = t.memory();
    eprintln!("100k processes: {m:?} ({} bytes per process)", m.total / n);
    assert!(m.argv > n * 150, "argv counted: {m:?}");
    assert!(m.total < 200 << 20, "{m:?}");
}

/// `VmRSS` of this process in bytes.
fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_ascii_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// The resident memory of a table of 100,000 processes, measured. Run alone, in release mode:
/// `cargo test -p cnlink-procmon --release --lib rss_of -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: run alone (other tests in the process would count too)"]
fn rss_of_a_hundred_thousand_processes() {
    let before = rss();
    let mut t = ProcessTable::new(host(), TableConfig::default());
    // Seeded in slices, so that the snapshot's own memory is reused and not counted.
    for chunk in 0..100 {
        t.seed(&synthetic(1000 + chunk * 1000, 1000));
    }
    let grown = rss() - before;
    let m = t.memory();
    eprintln!("100k processes: RSS grew {} MiB; the table counts {} MiB", grown >> 20, m.total >> 20);
    assert_eq!(t.stats().live, 100_000);
    assert!(grown < 200 << 20);
}

#[test]
fn an_unseen_later_process_never_borrows_an_exited_entry() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(1100, P::new(1100, 100, 10 * TICK, "first", &["first", "--secret"]).obs());
    let a = t.handle(&fork(10 * TICK, 100, 1100), &mut fake).entity_id;
    t.handle(&exit(11 * TICK, 1100, 1100, 100), &mut fake);
    // Lost: the second process's fork. Its exit (a zombie still in /proc) is its own.
    fake.procs.insert(1100, P::new(1100, 100, 20 * TICK, "second", &["second"]).obs());
    let x = t.handle(&exit(21 * TICK, 1100, 1100, 100), &mut fake);
    assert_ne!(x.entity_id, a);
    assert_eq!(x.process.unwrap().program.name, "second");
    // And without anything in /proc, an id of its own from the event.
    fake.procs.remove(&1100);
    let x = t.handle(&exit(31 * TICK, 1100, 1100, 100), &mut fake);
    assert_eq!((x.entity_id_source, x.process.is_none()), (Some(EntityIdSource::Event), true));
}

#[test]
fn a_table_seeded_with_another_tables_snapshot_knows_the_same_processes() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    t.handle(&fork(2 * TICK, 100, 200), &mut fake);
    fake.procs.insert(
        200,
        P { cgroup: "0::/user.slice/session-3.scope\n", ..P::new(200, 100, 2 * TICK, "vim", &["vim", "x"]) }.obs(),
    );
    t.handle(&exec(3 * TICK, 200), &mut fake);
    t.handle(&thread(4 * TICK, 200, 201), &mut fake);
    // A child gone before its stat could be read: its id comes from the fork event, and it is left out.
    t.handle(&fork(5 * TICK, 100, 300), &mut fake);
    let snap = t.as_snapshot();
    assert_eq!(snap.ticks_per_second, 100);
    assert_eq!(snap.processes.iter().map(|o| o.pid).collect::<Vec<_>>(), [1, 2, 100, 200]);
    let mut again = ProcessTable::new(host(), TableConfig::default());
    again.seed(&snap);
    for pid in [1, 2, 100, 200] {
        let (a, b) = (t.get(pid).unwrap(), again.get(pid).unwrap());
        assert_eq!((a.entity_id, a.parent_entity_id, a.parent_pid), (b.entity_id, b.parent_entity_id, b.parent_pid));
        assert_eq!((argv(a), &a.program.name, &a.program.exe), (argv(b), &b.program.name, &b.program.exe));
        assert_eq!(
            (a.creds, &a.namespaces, a.kthread, a.start_ticks),
            (b.creds, &b.namespaces, b.kthread, b.start_ticks)
        );
        assert_eq!(a.cgroup.as_ref().map(|c| &c.path), b.cgroup.as_ref().map(|c| &c.path));
        assert_eq!(a.entry_leader, b.entry_leader, "pid {pid}");
        let ids = |t: &ProcessTable| t.ancestors(pid, 8).iter().map(|p| p.entity_id).collect::<Vec<_>>();
        assert_eq!(ids(&t), ids(&again));
    }
    assert_eq!(again.threads(200), 0, "thread counts are not in a snapshot");
    assert!(again.get(300).is_none());
}
