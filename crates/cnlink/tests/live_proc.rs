//! The proc connector on the live kernel: events of children we make, filters, acks, several listeners.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use cnlink::proc::{Event, ProcEvents, ProcOptions};
use cnlink::wire::{comm_str, EventData, EventMask, ExitStatus};

const T: Duration = Duration::from_secs(10);

fn exit_of(events: &[Event], pid: i32) -> Option<u32> {
    events.iter().find_map(|e| match e.data {
        EventData::Exit { process_pid, exit_code, .. } if process_pid == pid => Some(exit_code),
        _ => None,
    })
}

#[test]
fn fork_exec_exit_of_a_child_with_its_exit_code() {
    if !common::live_kernel() {
        return;
    }
    let mut events = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let mut child = Command::new("/bin/sh").args(["-c", "exit 3"]).spawn().unwrap();
    let pid = child.id() as i32;
    assert_eq!(child.wait().unwrap().code(), Some(3));
    let seen = common::collect_until(&mut events, T, |ev| exit_of(ev, pid).is_some());
    let me = std::process::id() as i32;
    assert!(
        seen.iter().any(|e| matches!(e.data, EventData::Fork { parent_tgid, child_pid, child_tgid, .. }
            if parent_tgid == me && child_pid == pid && child_tgid == pid)),
        "fork of {pid} by {me}"
    );
    assert!(seen.iter().any(|e| matches!(e.data, EventData::Exec { process_pid, .. } if process_pid == pid)));
    let code = exit_of(&seen, pid).unwrap();
    assert_eq!(code, 3 << 8);
    assert_eq!(ExitStatus::from_raw(code), ExitStatus::Exited(3));
    let exit =
        seen.iter().find(|e| matches!(e.data, EventData::Exit { process_pid, .. } if process_pid == pid)).unwrap();
    assert!(matches!(exit.data, EventData::Exit { parent_tgid, .. } if parent_tgid == me));
    assert!(exit.timestamp_ns > 0);
    assert_eq!(events.stats().lost, 0);
}

#[test]
fn comm_change_of_a_thread() {
    if !common::live_kernel() {
        return;
    }
    let mut events = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let tid = std::thread::spawn(|| {
        rustix::thread::set_name(c"cnlink-comm-xy").unwrap();
        rustix::thread::gettid().as_raw_nonzero().get()
    })
    .join()
    .unwrap();
    let seen = common::collect_until(&mut events, T, |ev| {
        ev.iter().any(|e| matches!(e.data, EventData::Comm { process_pid, .. } if process_pid == tid))
    });
    let me = std::process::id() as i32;
    let comm = seen.iter().find_map(|e| match e.data {
        EventData::Comm { process_pid, process_tgid, comm } if process_pid == tid => Some((process_tgid, comm)),
        _ => None,
    });
    let (tgid, comm) = comm.unwrap();
    assert_eq!(tgid, me, "a thread: pid != tgid");
    assert_eq!(comm_str(&comm), "cnlink-comm-xy");
    assert!(
        seen.iter().any(|e| matches!(e.data, EventData::Fork { child_pid, child_tgid, .. }
        if child_pid == tid && child_tgid == me)),
        "thread creation is a fork with child_pid != child_tgid"
    );
}

#[test]
fn uid_change() {
    if !common::live_kernel() {
        return;
    }
    let mut events = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let mut child = Command::new("/bin/true").uid(65534).spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let seen = common::collect_until(&mut events, T, |ev| exit_of(ev, pid).is_some());
    assert!(
        seen.iter().any(
            |e| matches!(e.data, EventData::Uid { process_pid, ruid: 65534, euid: 65534, .. } if process_pid == pid)
        ),
        "uid event for {pid}"
    );
}

#[test]
fn exit_only_filter_delivers_no_forks() {
    if !common::live_kernel() {
        return;
    }
    let opts = ProcOptions { events: EventMask::EXIT, ..Default::default() };
    let mut events = ProcEvents::subscribe(opts).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let (major, minor) = release
        .split_once('.')
        .map(|(a, b)| (a.parse::<u32>().unwrap(), b.split('.').next().unwrap().parse::<u32>().unwrap_or(0)))
        .unwrap();
    if (major, minor) >= (6, 6) {
        assert!(events.kernel_filtered(), "6.6+ filters in the kernel");
    }
    let mut child = Command::new("/bin/sh").args(["-c", "exit 0"]).spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let seen = common::collect_until(&mut events, T, |ev| exit_of(ev, pid).is_some());
    assert!(seen.iter().all(|e| matches!(e.data, EventData::Exit { .. })), "only exits: {seen:?}");
}

#[test]
fn nonzero_exit_filter() {
    if !common::live_kernel() {
        return;
    }
    let opts = ProcOptions { events: EventMask::NONZERO_EXIT, ..Default::default() };
    let mut events = ProcEvents::subscribe(opts).unwrap();
    let mut zero = Command::new("/bin/sh").args(["-c", "exit 0"]).spawn().unwrap();
    let zero_pid = zero.id() as i32;
    zero.wait().unwrap();
    let mut five = Command::new("/bin/sh").args(["-c", "exit 5"]).spawn().unwrap();
    let five_pid = five.id() as i32;
    five.wait().unwrap();
    let seen = common::collect_until(&mut events, T, |ev| exit_of(ev, five_pid).is_some());
    assert_eq!(exit_of(&seen, five_pid), Some(5 << 8));
    assert_eq!(exit_of(&seen, zero_pid), None, "exit 0 is filtered out");
    assert!(seen.iter().all(|e| matches!(e.data, EventData::Exit { exit_code, .. } if exit_code != 0)));
}

#[test]
fn two_listeners_in_one_process_both_see_a_child() {
    if !common::live_kernel() {
        return;
    }
    // Each subscription waits for its own ack (matched on the ack field, as the kernel sends it).
    let mut a = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    let mut b = ProcEvents::subscribe(ProcOptions::default()).unwrap();
    assert_ne!(a.socket().port(), b.socket().port());
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    for events in [&mut a, &mut b] {
        let seen = common::collect_until(events, T, |ev| exit_of(ev, pid).is_some());
        assert!(seen.iter().any(|e| matches!(e.data, EventData::Fork { child_pid, .. } if child_pid == pid)));
    }
}
