use cnlink_procmon::{LossCause, LostEvents};

use super::*;
use crate::monitor::clock::{LocalClock, Reading, SharedClock};
use crate::monitor::testkit::{exit, handle, machine, process, TICK};

fn env(clock: SharedClock) -> TextEnv {
    TextEnv { pid_width: 7, clock, user_name: Box::new(|uid| (uid == 1000).then(|| b"alice\x1b".to_vec())) }
}

fn human(style: NameStyle, cols: Columns) -> Human {
    Human::new(style, cols, env(LocalClock::fixed(0, 0).shared()))
}

fn text(h: &Human, rec: &ProcRecord) -> String {
    let mut out = Vec::new();
    h.record(&mut out, rec);
    String::from_utf8(out).unwrap()
}

#[test]
fn exit_line_has_code_lifetime_and_name() {
    let (mut t, mut fake) = machine();
    fake.0.insert(42, process(42, 100, 0, "sh", &[b"/bin/sh", b"-c", b"exit 3"], 0));
    handle(&mut t, &mut fake, TICK / 2, EventData::Exec { process_pid: 42, process_tgid: 42 });
    let l = text(
        &human(NameStyle::default(), Columns::default()),
        &handle(&mut t, &mut fake, 2 * TICK, exit(42, 100, 768)),
    );
    assert!(l.contains(" exit "), "{l}");
    assert!(l.contains(" 42 "), "{l}");
    assert!(l.contains("3 "), "{l}");
    assert!(l.contains("0.020s"), "{l}");
    assert!(l.trim_end().ends_with("/bin/sh -c exit 3"), "{l}");
}

#[test]
fn names_follow_the_style_and_are_escaped() {
    let (mut t, mut fake) = machine();
    fake.0.insert(50, process(50, 100, 0, "ls", &[b"/usr/bin/ls", b"-l", b"a\rb\xff"], 0));
    let rec = handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 50, process_tgid: 50 });
    let name = |style| {
        let mut v = Vec::new();
        human(style, Columns::default()).name(&mut v, rec.process.as_deref());
        String::from_utf8(v).unwrap()
    };
    assert_eq!(name(NameStyle::default()), r"/usr/bin/ls -l a\x0db\xff");
    assert_eq!(name(NameStyle { comm: true, ..Default::default() }), "ls");
    assert_eq!(name(NameStyle { strip_dir: true, ..Default::default() }), r"ls -l a\x0db\xff");
    assert_eq!(name(NameStyle { short: true, ..Default::default() }), "/usr/bin/ls");
    let mut v = Vec::new();
    human(NameStyle::default(), Columns::default()).name(&mut v, None);
    assert_eq!(v, b"<unknown>");
}

#[test]
fn fork_prints_parent_and_child_lines_and_extra_columns() {
    let (mut t, mut fake) = machine();
    let h = human(NameStyle::default(), Columns { extra: true, ..Default::default() });
    let thread = EventData::Fork { parent_pid: 1, parent_tgid: 1, child_pid: 101, child_tgid: 100 };
    let l = text(&h, &handle(&mut t, &mut fake, TICK, thread));
    let lines: Vec<&str> = l.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("clone") && lines[0].contains("parent") && lines[0].contains(" 100 "), "{l}");
    assert!(lines[1].contains("thread") && lines[1].contains(" 101 "), "{l}");
    // The user name is escaped; the terminal is named as ps names it.
    assert!(lines[1].contains(r"alice\x1b") && lines[1].contains("pts/1"), "{l}");
    assert_eq!(signal_name(libc::SIGKILL as u8), "SIGKILL");
    assert_eq!(signal_name(64), "SIG64");
}

#[test]
fn exec_lines_name_the_entry_leader_with_extra_columns() {
    let (mut t, mut fake) = machine();
    fake.0.insert(60, process(60, 100, 0, "vim", &[b"vim"], 1000));
    let rec = handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 60, process_tgid: 60 });
    let plain = text(&human(NameStyle::default(), Columns::default()), &rec);
    assert!(!plain.contains("entry"), "{plain}");
    let extra = text(&human(NameStyle::default(), Columns { extra: true, ..Default::default() }), &rec);
    assert!(extra.trim_end().ends_with("vim (entry login: vim[60])"), "{extra}");
}

#[test]
fn the_time_column_follows_clock_steps_and_replays_them_exactly() {
    const S: u64 = 1_000_000_000;
    let reading =
        |mono: u64, offset: i64| Reading { monotonic_ns: mono, realtime_minus_monotonic_ns: offset, utc_offset_s: 0 };
    // Kernel time 10:00:00 minus 5 ns is local 09:59:59, 5 ns before the next second.
    let clock = LocalClock::starting(reading(36_000 * S - 10, -5)).shared();
    let h = Human::new(NameStyle::default(), Columns::default(), env(clock.clone()));
    let (mut t, mut fake) = machine();
    let exec = EventData::Exec { process_pid: 100, process_tgid: 100 };
    let mut out = Vec::new();
    let before = handle(&mut t, &mut fake, 36_000 * S, exec);
    h.record(&mut out, &before);
    // The next batch's reading differs by jitter only: the same second, as a replay will print it.
    assert_eq!(clock.borrow_mut().update(reading(36_000 * S + 1_000, 60)), None);
    h.record(&mut out, &before);
    // The machine slept 1 h 30 min: the monotonic clock stood still, wall-clock time did not.
    let step = clock.borrow_mut().update(reading(36_001 * S, 5_400 * S as i64 - 5));
    assert!(step.is_some());
    let after = handle(&mut t, &mut fake, 36_000 * S + 2_000, exec);
    h.record(&mut out, &after);
    let text = String::from_utf8(out).unwrap();
    let times: Vec<&str> = text.lines().map(|l| &l[..8]).collect();
    assert_eq!(times, ["09:59:59", "09:59:59", "11:30:00"], "{text}");
    // A replay's clock, made of the recorded steps, prints the same lines.
    let replayed = LocalClock::recorded(clock.borrow().steps().iter().copied()).unwrap().shared();
    let r = Human::new(NameStyle::default(), Columns::default(), env(replayed));
    let mut again = Vec::new();
    for rec in [&before, &before, &after] {
        r.record(&mut again, rec);
    }
    assert_eq!(String::from_utf8(again).unwrap(), text);
}

#[test]
fn losses_say_how_sure_they_are() {
    let h = human(NameStyle::default(), Columns::default());
    let mut out = Vec::new();
    h.lost(&mut out, &LostEvents::exact(LossCause::SeqGap, 5, 0));
    h.lost(&mut out, &LostEvents { count: Some(3), exact: false, ..LostEvents::exact(LossCause::SeqGap, 0, 0) });
    h.lost(&mut out, &LostEvents { count: None, exact: false, ..LostEvents::exact(LossCause::SocketDrops, 0, 0) });
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(" 5 events lost (seq_gap)"), "{text}");
    assert!(text.contains(" at least 3 events lost (seq_gap)"), "{text}");
    assert!(text.contains(" ? events lost (socket_drops)"), "{text}");
}
