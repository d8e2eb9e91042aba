//! Finding out why the proc connector cannot serve this process.
//!
//! The kernel ignores proc connector requests silently from outside the initial user and pid namespaces, and
//! refuses sends to the kernel from outside the initial network namespace; these checks read only world-readable
//! `/proc/self` files, so they work unprivileged.

use std::fs;

/// True when `/proc/self/uid_map` is the identity map of the initial user namespace.
pub(crate) fn in_initial_user_ns() -> Option<bool> {
    let map = fs::read_to_string("/proc/self/uid_map").ok()?;
    let fields: Vec<&str> = map.split_whitespace().collect();
    Some(fields == ["0", "0", "4294967295"])
}

/// True when `NSpid` in `/proc/self/status` has one entry (the process is in the initial pid namespace).
pub(crate) fn in_initial_pid_ns() -> Option<bool> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    Some(line.split_whitespace().count() == 2)
}

/// Whether `/proc/net/connector` lists the proc connector (the file exists only in the initial netns).
pub(crate) fn proc_connector_registered() -> Option<bool> {
    let list = fs::read_to_string("/proc/net/connector").ok()?;
    Some(list.lines().skip(1).any(|l| l.split_whitespace().last() == Some("1:1")))
}

/// The most likely reason a subscription got no ack.
pub(crate) fn likely_no_ack_cause() -> &'static str {
    if in_initial_user_ns() == Some(false) {
        "this process is in a user namespace other than the initial one, whose requests the kernel ignores"
    } else if in_initial_pid_ns() == Some(false) {
        "this process is in a pid namespace other than the initial one, whose requests the kernel ignores"
    } else if proc_connector_registered() == Some(false) {
        "the kernel has no proc connector (CONFIG_PROC_EVENTS is off)"
    } else {
        "unknown: the kernel should have answered at once (is the system overloaded?)"
    }
}
