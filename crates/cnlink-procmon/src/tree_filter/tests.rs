//! The tree filters over tables driven by synthetic events (the table tests' simulated `/proc`).

use cnlink::wire::EventData;

use super::*;
use crate::fake::{ev, exec, exit, fork, host, machine, thread, FakeProc, P, TICK};
use crate::procfs::{ProcSource, Wants};
use crate::table::TableConfig;

/// Feeds events in order, returning the pids (of the record's process, or the event's subject) admitted.
fn run(
    t: &mut ProcessTable,
    fake: &mut FakeProc,
    f: &mut TreeFilter,
    events: &[KernelEvent],
) -> Vec<(&'static str, i32)> {
    let mut shown = Vec::new();
    for e in events {
        let rec = t.handle(e, fake);
        if f.admits(t, &rec) {
            let pid = e.data.subject().map_or(0, |(pid, _)| pid);
            shown.push((e.data.name(), pid));
        }
    }
    shown
}

use crate::table::record::KernelEvent;

fn pid_root(pid: i32) -> TreeFilter {
    TreeFilter::default().descendants_of([ProcessRef::Pid(pid)])
}

#[test]
fn process_refs_parse() {
    assert_eq!("42".parse(), Ok(ProcessRef::Pid(42)));
    assert_eq!("sshd".parse(), Ok(ProcessRef::Name(BStr::from("sshd"))));
    let id = "3fcdb3d6f1e91a672c25129710a33de5";
    assert_eq!(id.parse(), Ok(ProcessRef::Entity(id.parse().unwrap())));
    assert!("0".parse::<ProcessRef>().is_err());
    assert!("".parse::<ProcessRef>().is_err());
    assert!("99999999999".parse::<ProcessRef>().is_err());
}

#[test]
fn a_pid_root_and_everything_born_below_it() {
    let (mut t, mut fake) = machine();
    let mut f = pid_root(100);
    f.start(&t).unwrap();
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    fake.procs.insert(300, P::new(300, 200, 3 * TICK, "sleep", &["sleep", "9"]).obs());
    fake.procs.insert(400, P::new(400, 1, 4 * TICK, "cron", &["cron"]).obs());
    let shown = run(
        &mut t,
        &mut fake,
        &mut f,
        &[
            fork(2 * TICK, 100, 200),
            fork(3 * TICK, 200, 300),
            exec(3 * TICK + 1, 300),
            thread(3 * TICK + 2, 300, 301),
            fork(4 * TICK, 1, 400),
            exec(4 * TICK + 1, 400),
            exec(5 * TICK, 100),
        ],
    );
    assert_eq!(
        shown,
        [("fork", 200), ("fork", 300), ("exec", 300), ("fork", 301), ("exec", 100)],
        "the root itself, its children and grandchildren and their threads; not init's other children"
    );
}

#[test]
fn a_reparented_descendant_stays_one() {
    let (mut t, mut fake) = machine();
    let mut f = pid_root(100);
    f.start(&t).unwrap();
    // 100 -> 200 -> 300 (a double fork); 200 exits and the kernel moves 300 to init.
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    fake.procs.insert(300, P::new(300, 200, 3 * TICK, "bash", &["bash"]).obs());
    let mut events = vec![fork(2 * TICK, 100, 200), fork(3 * TICK, 200, 300), exit(4 * TICK, 200, 200, 100)];
    let shown = run(&mut t, &mut fake, &mut f, &events);
    assert_eq!(shown.len(), 3);
    fake.procs.remove(&200);
    fake.procs.insert(300, P::new(300, 1, 3 * TICK, "daemon", &["daemon"]).obs());
    events = vec![exec(5 * TICK, 300), fork(6 * TICK, 300, 310), exit(7 * TICK, 300, 300, 1)];
    fake.procs.insert(310, P::new(310, 300, 6 * TICK, "daemon", &["daemon"]).obs());
    let shown = run(&mut t, &mut fake, &mut f, &events);
    assert_eq!(t.parent(300).map(|p| p.pid), Some(1), "the table follows the kernel");
    assert_eq!(shown, [("exec", 300), ("fork", 310), ("exit", 300)], "its whole life is shown");

    // Excluding the subtree hides the same lines.
    let (mut t, mut fake) = machine();
    let mut x = TreeFilter::default().exclude_descendants_of([ProcessRef::Pid(100)]);
    x.start(&t).unwrap();
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    fake.procs.insert(300, P::new(300, 200, 3 * TICK, "bash", &["bash"]).obs());
    let first = [fork(2 * TICK, 100, 200), fork(3 * TICK, 200, 300), exit(4 * TICK, 200, 200, 100)];
    assert!(run(&mut t, &mut fake, &mut x, &first).is_empty());
    fake.procs.remove(&200);
    fake.procs.insert(300, P::new(300, 1, 3 * TICK, "daemon", &["daemon"]).obs());
    fake.procs.insert(400, P::new(400, 1, 8 * TICK, "cron", &["cron"]).obs());
    let later = [exec(5 * TICK, 300), exit(7 * TICK, 300, 300, 1), fork(8 * TICK, 1, 400)];
    assert_eq!(run(&mut t, &mut fake, &mut x, &later), [("fork", 400)]);
}

#[test]
fn names_make_roots_at_start_and_later() {
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["/sbin/init"]).obs());
    fake.procs.insert(50, P::new(50, 1, TICK, "sshd", &["sshd", "-D"]).obs());
    fake.procs.insert(51, P::new(51, 50, TICK, "bash", &["-bash"]).obs());
    fake.procs.insert(60, P::new(60, 1, TICK, "getty", &["getty"]).obs());
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    // A name longer than a task name (15 bytes) matches the executable's file name.
    let mut f = TreeFilter::default().descendants_of(["sshd".parse().unwrap(), "a-very-long-daemon".parse().unwrap()]);
    f.start(&t).unwrap();
    fake.procs.insert(52, P::new(52, 51, 2 * TICK, "bash", &["bash"]).obs());
    fake.procs.insert(70, P::new(70, 1, 3 * TICK, "a-very-long-daemon", &["a-very-long-daemon"]).obs());
    fake.procs.insert(71, P::new(71, 70, 4 * TICK, "a-very-long-dae", &["worker"]).obs());
    let shown = run(
        &mut t,
        &mut fake,
        &mut f,
        &[
            // Below sshd, found in the snapshot.
            fork(2 * TICK, 51, 52),
            // Not below it.
            exec(2 * TICK + 1, 60),
            // init forks 70 (init's child, not shown), which then execs the named program.
            fork(3 * TICK, 1, 70),
            exec(3 * TICK + 1, 70),
            fork(4 * TICK, 70, 71),
        ],
    );
    assert_eq!(shown, [("fork", 52), ("exec", 70), ("fork", 71)]);
    assert_eq!(fake.procs[&70].exe.as_ref().unwrap().path, b"/usr/bin/a-very-long-daemon");
}

#[test]
fn an_unidentified_process_goes_by_the_parent_its_event_names() {
    let (mut t, mut fake) = machine();
    let mut f = pid_root(100);
    f.start(&t).unwrap();
    // 900 was never seen and is gone: its exit names 100 as the parent.
    let gone = |parent| {
        ev(
            9 * TICK,
            EventData::Exit {
                process_pid: 900,
                process_tgid: 900,
                exit_code: 0,
                exit_signal: 17,
                parent_pid: parent,
                parent_tgid: parent,
            },
        )
    };
    let rec = t.handle(&gone(100), &mut fake);
    assert!(rec.process.is_none());
    assert!(f.admits(&t, &rec));
    let rec = t.handle(&gone(1), &mut fake);
    assert!(!f.admits(&t, &rec));
}

#[test]
fn a_pid_root_must_be_live_at_start() {
    let (t, _) = machine();
    assert_eq!(pid_root(4242).start(&t).unwrap_err(), NoSuchProcess(4242));
    let entity = ProcessRef::Entity(t.get(100).unwrap().entity_id);
    let mut f = TreeFilter::default().descendants_of([entity]);
    f.start(&t).unwrap();
    assert!(f.follows_tree());
}

#[test]
fn containers_by_id_prefix_and_units_by_name_or_slice() {
    let id = "7951fb549ab99e0722a949b6c121634e1f3a36b5bacbe5392991e3b12251e6b8";
    let docker: &'static str = Box::leak(format!("0::/system.slice/docker-{id}.scope\n").into_boxed_str());
    let mut fake = FakeProc::default();
    fake.procs.insert(1, P::new(1, 0, 0, "init", &["/sbin/init"]).obs());
    fake.procs.insert(10, P { cgroup: docker, ..P::new(10, 1, TICK, "nginx", &["nginx"]) }.obs());
    let nginx = "0::/system.slice/nginx.service\n";
    fake.procs.insert(20, P { cgroup: nginx, ..P::new(20, 1, TICK, "nginx", &["nginx"]) }.obs());
    let user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-term.scope\n";
    fake.procs.insert(30, P { cgroup: user, ..P::new(30, 1, TICK, "vte", &["vte"]) }.obs());
    let mut t = ProcessTable::new(host(), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    let admitted = |f: TreeFilter, t: &mut ProcessTable, fake: &mut FakeProc| {
        let mut f = f;
        f.start(t).unwrap();
        [10, 20, 30]
            .into_iter()
            .filter(|&pid| {
                let rec = t.handle(&exec(5 * TICK, pid), fake);
                f.admits(t, &rec)
            })
            .collect::<Vec<_>>()
    };
    let c = |s: &str| TreeFilter::default().container(s);
    assert_eq!(admitted(c(id), &mut t, &mut fake), [10]);
    assert_eq!(admitted(c("7951FB549AB9"), &mut t, &mut fake), [10], "a short id, either case");
    assert_eq!(admitted(c("0000"), &mut t, &mut fake), Vec::<i32>::new());
    let u = |s: &str| TreeFilter::default().unit(s);
    assert_eq!(admitted(u("nginx.service"), &mut t, &mut fake), [20]);
    assert_eq!(admitted(u("nginx"), &mut t, &mut fake), [20], "a service by its short name");
    assert_eq!(admitted(u("system.slice"), &mut t, &mut fake), [10, 20]);
    assert_eq!(admitted(u("user-1000.slice"), &mut t, &mut fake), [30], "any slice on the path");
    assert_eq!(admitted(u("app-term.scope"), &mut t, &mut fake), [30]);
    assert_eq!(admitted(u("ssh"), &mut t, &mut fake), Vec::<i32>::new());
    // Conditions combine: all must hold.
    assert_eq!(admitted(u("system.slice").container(&id[..12]), &mut t, &mut fake), [10]);
}

#[test]
fn exited_members_are_forgotten_after_a_while() {
    let (mut t, mut fake) = machine();
    let mut f = pid_root(100);
    f.start(&t).unwrap();
    let n = EXITED_KEPT as i32 + 10;
    for i in 0..n {
        let pid = 1000 + i;
        let ts = (10 + u64::try_from(i).unwrap()) * TICK;
        fake.procs.insert(pid, P::new(pid, 100, ts, "true", &["true"]).obs());
        let rec = t.handle(&fork(ts, 100, pid), &mut fake);
        assert!(f.admits(&t, &rec));
        fake.procs.remove(&pid);
        let rec = t.handle(&exit(ts + 1, pid, pid, 100), &mut fake);
        assert!(f.admits(&t, &rec));
    }
    let inc = f.include.as_ref().unwrap();
    assert!(inc.members.len() <= EXITED_KEPT + 1, "{}", inc.members.len());
    assert_eq!(inc.exited.len(), EXITED_KEPT);
}

#[test]
fn the_roots_parent_is_not_below_it() {
    let (mut t, mut fake) = machine();
    fake.procs.insert(200, P::new(200, 100, 2 * TICK, "bash", &["bash"]).obs());
    t.handle(&fork(2 * TICK, 100, 200), &mut fake);
    let mut f = pid_root(200);
    f.start(&t).unwrap();
    fake.procs.insert(300, P::new(300, 200, 3 * TICK, "sleep", &["sleep"]).obs());
    let shown = run(
        &mut t,
        &mut fake,
        &mut f,
        &[
            fork(3 * TICK, 200, 300),
            exit(4 * TICK, 300, 300, 200),
            exit(5 * TICK, 200, 200, 100),
            exit(6 * TICK, 100, 100, 1),
        ],
    );
    assert_eq!(shown, [("fork", 300), ("exit", 300), ("exit", 200)]);
}
