//! The tree view over tables driven by synthetic events, compared line by line.

use cnlink::wire::EventData;
use cnlink_procmon::procfs::parse::{parse_cmdline, parse_stat};
use cnlink_procmon::procfs::{Exe, StatusFields};
use cnlink_procmon::{EnrichStatus, HostIdentity, KernelEvent, Observation, ProcSource, TableConfig, Wants};

use super::*;
use crate::monitor::clock::LocalClock;
use crate::monitor::testkit::Fake;

const TICK: u64 = 10_000_000;

impl Fake {
    /// Process `pid` (child of `ppid`, started at `ticks`) runs `argv`.
    fn set(&mut self, pid: i32, ppid: i32, ticks: u64, argv: &[&str]) {
        let name = argv[0].rsplit('/').next().unwrap();
        let stat = format!("{pid} ({name}) S {ppid} {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 0 0");
        let mut cmdline = Vec::new();
        for a in argv {
            cmdline.extend_from_slice(a.as_bytes());
            cmdline.push(0);
        }
        let exe = if argv[0].starts_with('/') { argv[0].to_string() } else { format!("/usr/bin/{name}") };
        self.0.insert(
            pid,
            Observation {
                pid,
                status: EnrichStatus::Ok,
                boot_offset_ns: 0,
                stat: parse_stat(stat.as_bytes()),
                argv: Some(parse_cmdline(&cmdline, 1024, 32 * 1024, false)),
                exe: Some(Exe { path: exe.into_bytes(), deleted: false, memfd: false, truncated: false }),
                cwd: None,
                status_fields: Some(StatusFields { ruid: 0, euid: 0, rgid: 0, egid: 0, nspid: vec![pid] }),
                cgroup: None,
                pid_ns: None,
                mnt_ns: None,
            },
        );
    }
}

fn ev(ts: u64, data: EventData) -> KernelEvent {
    KernelEvent { seq: 0, cpu: 0, timestamp_ns: ts, data }
}

fn fork(ts: u64, parent: i32, child: i32) -> KernelEvent {
    ev(ts, EventData::Fork { parent_pid: parent, parent_tgid: parent, child_pid: child, child_tgid: child })
}

fn exec(ts: u64, pid: i32) -> KernelEvent {
    ev(ts, EventData::Exec { process_pid: pid, process_tgid: pid })
}

fn exit(ts: u64, pid: i32, tgid: i32, parent: i32, code: u32) -> KernelEvent {
    let data = EventData::Exit {
        process_pid: pid,
        process_tgid: tgid,
        exit_code: code,
        exit_signal: 17,
        parent_pid: parent,
        parent_tgid: parent,
    };
    ev(ts, data)
}

/// init (1) and an sshd (50) with a login shell (60), seen at start.
fn machine() -> (ProcessTable, Fake) {
    let mut fake = Fake::default();
    fake.set(1, 0, 0, &["/sbin/init"]);
    fake.set(50, 1, 1, &["/usr/sbin/sshd", "-D"]);
    fake.set(60, 50, 2, &["-bash"]);
    let mut t = ProcessTable::new(HostIdentity::new("h", "b"), TableConfig::default());
    t.seed(&fake.snapshot(Wants::ALL));
    (t, fake)
}

/// The view's lines for `events`, drawn with the table's ancestry.
fn lines(t: &mut ProcessTable, fake: &mut Fake, view: &mut TreeView, events: &[KernelEvent]) -> Vec<String> {
    drawn(t, fake, view, events, true)
}

fn drawn(
    t: &mut ProcessTable,
    fake: &mut Fake,
    view: &mut TreeView,
    events: &[KernelEvent],
    with_table: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        let rec = t.handle(e, fake);
        view.event(&mut out, &rec, with_table.then_some(&*t));
        view.forget(&rec);
    }
    String::from_utf8(out).unwrap().lines().map(|l| l.trim_end().to_string()).collect()
}

fn view() -> TreeView {
    let env = TextEnv { pid_width: 5, clock: LocalClock::fixed(0, 0).shared(), user_name: Box::new(|_| None) };
    TreeView::new(NameStyle::default(), Columns::default(), env)
}

#[test]
fn a_shell_chain() {
    let (mut t, mut fake) = machine();
    let mut v = view();
    // bash runs `sh -c 'ls | wc -l'`: sh forks two children, each execs.
    fake.set(61, 60, 100, &["bash"]);
    let mut out = lines(&mut t, &mut fake, &mut v, &[fork(100 * TICK, 60, 61)]);
    fake.set(61, 60, 100, &["sh", "-c", "ls | wc -l"]);
    fake.set(62, 61, 101, &["sh"]);
    fake.set(63, 61, 101, &["sh"]);
    out.extend(lines(
        &mut t,
        &mut fake,
        &mut v,
        &[exec(100 * TICK + 1, 61), fork(101 * TICK, 61, 62), fork(101 * TICK + 1, 61, 63)],
    ));
    fake.set(62, 61, 101, &["/bin/ls"]);
    fake.set(63, 61, 101, &["wc", "-l"]);
    out.extend(lines(
        &mut t,
        &mut fake,
        &mut v,
        &[
            exec(101 * TICK + 2, 62),
            exec(101 * TICK + 3, 63),
            exit(102 * TICK, 62, 62, 61, 0),
            exit(103 * TICK, 63, 63, 61, 0),
            exit(104 * TICK + 5_000_000, 61, 61, 60, 256),
        ],
    ));
    assert_eq!(
        out,
        [
            "00:00:01 fork     61                  -bash (parent 60 -bash)",
            "00:00:01 exec     61                  sh -c ls | wc -l",
            "00:00:01 fork     62                  └ sh -c ls | wc -l",
            "00:00:01 fork     63                  └ sh -c ls | wc -l",
            "00:00:01 exec     62                  └ /bin/ls",
            "00:00:01 exec     63                  └ wc -l",
            "00:00:01 exit     62 0         0.010s └ /bin/ls",
            "00:00:01 exit     63 0         0.020s └ wc -l",
            "00:00:01 exit     61 1         0.045s sh -c ls | wc -l",
        ]
    );
}

#[test]
fn a_double_fork_and_the_reparenting() {
    let (mut t, mut fake) = machine();
    let mut v = view();
    let mut out = Vec::new();
    // bash 60 runs a daemon that double-forks: 70 -> 71 -> 72; 71 exits, the kernel moves 72 to init.
    for (ts, parent, child) in [(100, 60, 70), (101, 70, 71), (102, 71, 72)] {
        fake.set(child, parent, ts, &["-bash"]);
        out.extend(lines(&mut t, &mut fake, &mut v, &[fork(ts * TICK, parent, child)]));
    }
    fake.set(70, 60, 100, &["/usr/bin/daemonize", "svc"]);
    out.extend(lines(&mut t, &mut fake, &mut v, &[exec(100 * TICK + 1, 70), exit(103 * TICK, 71, 71, 70, 0)]));
    fake.0.remove(&71);
    fake.set(72, 1, 102, &["/usr/sbin/svc", "--daemon"]);
    fake.set(73, 72, 104, &["/usr/sbin/svc", "--daemon"]);
    out.extend(lines(
        &mut t,
        &mut fake,
        &mut v,
        &[
            exec(103 * TICK + 1, 72),
            fork(104 * TICK, 72, 73),
            exit(105 * TICK, 70, 70, 60, 0),
            exit(106 * TICK, 73, 73, 72, 9),
            exit(107 * TICK, 72, 72, 1, 0),
        ],
    ));
    assert_eq!(
        out,
        [
            "00:00:01 fork     70                  -bash (parent 60 -bash)",
            "00:00:01 fork     71                  └ -bash",
            "00:00:01 fork     72                    └ -bash",
            "00:00:01 exec     70                  /usr/bin/daemonize svc",
            "00:00:01 exit     71 0         0.020s └ -bash",
            "00:00:01 exec     72                    └ /usr/sbin/svc --daemon (reparented to 1 init)",
            "00:00:01 fork     73                      └ /usr/sbin/svc --daemon",
            "00:00:01 exit     70 0         0.050s /usr/bin/daemonize svc",
            "00:00:01 exit     73 SIGKILL   0.020s     └ /usr/sbin/svc --daemon",
            "00:00:01 exit     72 0         0.050s   └ /usr/sbin/svc --daemon",
        ]
    );
}

#[test]
fn processes_seen_first_mid_tree_threads_and_hostile_names() {
    let (mut t, mut fake) = machine();
    fake.set(65, 60, 3, &["vim", "notes"]);
    t.seed(&fake.snapshot(Wants::ALL));
    let mut v = view();
    fake.set(50, 1, 1, &["/usr/sbin/sshd", "-D", "-R"]);
    fake.set(66, 60, 100, &["-bash"]);
    let mut out =
        lines(&mut t, &mut fake, &mut v, &[exec(99 * TICK, 50), exec(99 * TICK + 1, 65), fork(100 * TICK, 60, 66)]);
    fake.set(66, 60, 100, &["printf", "\x1b]0;pwned\x07\nfake line"]);
    let thread = ev(101 * TICK, EventData::Fork { parent_pid: 66, parent_tgid: 66, child_pid: 67, child_tgid: 66 });
    out.extend(lines(&mut t, &mut fake, &mut v, &[exec(100 * TICK + 1, 66), thread, exit(102 * TICK, 67, 66, 60, 0)]));
    assert_eq!(
        out,
        [
            // sshd is placed first, at the margin (init never had a line); vim and bash's new child go under
            // sshd, the nearest ancestor shown, and name their parent, which never had a line.
            "00:00:00 exec     50                  /usr/sbin/sshd -D -R (parent 1 init)",
            "00:00:00 exec     65                  └ vim notes (parent 60 -bash)",
            "00:00:01 fork     66                  └ -bash (parent 60 -bash)",
            "00:00:01 exec     66                  └ printf \\x1b]0;pwned\\x07\\x0afake line",
            "00:00:01 clone    67 thread             └ printf \\x1b]0;pwned\\x07\\x0afake line",
            "00:00:01 exit     67 0         0.010s   └ printf \\x1b]0;pwned\\x07\\x0afake line",
        ]
    );
}

#[test]
fn without_the_table_records_alone_place_processes() {
    let (mut t, mut fake) = machine();
    fake.set(65, 60, 3, &["vim", "notes"]);
    t.seed(&fake.snapshot(Wants::ALL));
    let mut v = view();
    fake.set(50, 1, 1, &["/usr/sbin/sshd", "-D", "-R"]);
    fake.set(66, 60, 100, &["-bash"]);
    fake.set(67, 66, 101, &["-bash"]);
    let events = [exec(99 * TICK, 50), exec(99 * TICK + 1, 65), fork(100 * TICK, 60, 66), fork(101 * TICK, 66, 67)];
    assert_eq!(
        drawn(&mut t, &mut fake, &mut v, &events, false),
        [
            "00:00:00 exec     50                  /usr/sbin/sshd -D -R (parent 1 init)",
            // An exec record carries its ancestry: vim goes under sshd as with the table.
            "00:00:00 exec     65                  └ vim notes (parent 60 -bash)",
            // A fork record has only the parent, which was never drawn: the child starts at the margin.
            "00:00:01 fork     66                  -bash (parent 60 -bash)",
            "00:00:01 fork     67                  └ -bash",
        ]
    );
}

#[test]
fn deep_trees_are_capped_and_places_are_bounded() {
    let (mut t, mut fake) = machine();
    let mut v = view();
    let mut parent = 60;
    let mut out = Vec::new();
    for i in 0..30 {
        let pid = 1000 + i;
        fake.set(pid, parent, 100 + i as u64, &["sh"]);
        out = lines(&mut t, &mut fake, &mut v, &[fork((100 + i as u64) * TICK, parent, pid)]);
        parent = pid;
    }
    // The 30th fork is 29 levels below the first: drawn at the cap with its depth written out.
    let last = &out[0];
    let name_at = last.find('└').unwrap();
    assert_eq!(&last[name_at..], "└[29] -bash");
    assert_eq!(name_at - last.find("1029").unwrap() - 4, 18 + 2 * usize::from(DEPTH_CAP - 1));
    // Places of exited processes go after EXITED_KEPT later exits.
    for i in 0..(EXITED_KEPT as i32 + 100) {
        let pid = 5000 + i;
        let ts = (200 + i as u64) * TICK;
        fake.set(pid, 60, 200 + i as u64, &["true"]);
        lines(&mut t, &mut fake, &mut v, &[fork(ts, 60, pid), exit(ts + 1, pid, pid, 60, 0)]);
        fake.0.remove(&pid);
    }
    assert_eq!(v.exited.len(), EXITED_KEPT);
    assert!(v.places.len() <= EXITED_KEPT + 30, "{}", v.places.len());
}
