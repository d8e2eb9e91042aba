//! The entry-leader rules: which processes explain why their descendants exist.
//!
//! The table walks from a process up through its ancestors (the process itself first) and stops at the first
//! one for which [`kind_of`] returns a kind. The rules, tried in this order for each process `P` with parent
//! `Q`:
//!
//! 1. `kthread`: `P` is a kernel thread, or pid 2 (`kthreadd`).
//! 2. `init`: `P` is pid 1.
//! 3. `container`: `P` is pid 1 of a nested pid namespace (`NSpid` ends in 1), or `P` is in a container's
//!    cgroup and `Q` is not in the same container.
//! 4. `systemd_unit`: `P`'s cgroup names a `*.service` unit that `Q`'s does not (the unit's first process).
//! 5. `login`: `P`'s cgroup is a `session-*.scope` that `Q`'s is not; or `P` leads its session and has a
//!    controlling terminal (a login shell from sshd, login, a terminal emulator, tmux); or `Q` is `sshd`,
//!    `sshd-session`, `login`, `telnetd`, `in.telnetd`, `in.rlogind` or `dropbear` and `P` is not.
//! 6. `cron`: `Q` is `cron`, `crond`, `anacron`, `atd` or `fcron` and `P` is not (the job under the daemon's
//!    per-job child).
//!
//! When the walk reaches a process whose parent is unknown, or goes deeper than its limit, the leader is the
//! topmost process reached, with kind `unknown`.

use super::process::{EntryLeaderKind, ProcessInfo};

/// Parents whose children start login sessions.
const LOGIN_PARENTS: &[&[u8]] =
    &[b"sshd", b"sshd-session", b"login", b"telnetd", b"in.telnetd", b"in.rlogind", b"dropbear"];

/// Schedulers whose children run jobs.
const CRON_NAMES: &[&[u8]] = &[b"cron", b"crond", b"anacron", b"atd", b"fcron"];

fn named(p: &ProcessInfo, names: &[&[u8]]) -> bool {
    names.contains(&p.program.name.as_bytes())
}

/// The kind that makes `p` an entry leader, given its parent `q` (if known); `None` when it is not one.
pub(crate) fn kind_of(p: &ProcessInfo, q: Option<&ProcessInfo>) -> Option<EntryLeaderKind> {
    if p.kthread || p.pid == 2 {
        return Some(EntryLeaderKind::Kthread);
    }
    if p.pid == 1 {
        return Some(EntryLeaderKind::Init);
    }
    if p.namespaces.nested() && p.namespaces.inner_pid() == Some(1) {
        return Some(EntryLeaderKind::Container);
    }
    let q = q?;
    if let Some(c) = p.container() {
        if q.container() != Some(c) {
            return Some(EntryLeaderKind::Container);
        }
    }
    let unit = p.unit();
    let unit_is_new = unit.is_some() && unit != q.unit();
    if unit_is_new && unit.is_some_and(|u| u.ends_with(".service")) {
        return Some(EntryLeaderKind::SystemdUnit);
    }
    if unit_is_new && unit.is_some_and(|u| u.starts_with("session-") && u.ends_with(".scope")) {
        return Some(EntryLeaderKind::Login);
    }
    if p.sid == p.pid && p.tty_nr != 0 {
        return Some(EntryLeaderKind::Login);
    }
    if named(q, LOGIN_PARENTS) && p.program.name != q.program.name {
        return Some(EntryLeaderKind::Login);
    }
    if named(q, CRON_NAMES) && !named(p, CRON_NAMES) {
        return Some(EntryLeaderKind::Cron);
    }
    None
}
