//! Helpers shared by the capture tests: the kernel datagrams captured in `cnlink`'s wire fixtures, the skip rules.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `cnlink::wire`'s fixtures (`#[cfg(test)]` there, so read from the source): the ack of a LISTEN, then the fork,
/// exec and exit of `sh -c 'exit 3'`, captured from Linux 6.18. Returns `(name, datagram)` in file order.
pub(crate) fn kernel_datagrams() -> Vec<(String, Vec<u8>)> {
    let src = include_str!("../../../cnlink/src/wire/fixtures.rs");
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in src.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub(crate) const ") {
            let name = rest.split(':').next().unwrap_or_default().to_string();
            current = Some((name, Vec::new()));
            continue;
        }
        let Some((_, bytes)) = current.as_mut() else { continue };
        if line.starts_with("];") {
            out.extend(current.take());
            continue;
        }
        let code = line.split("//").next().unwrap_or_default();
        for tok in code.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let hex = tok.strip_prefix("0x").unwrap_or_else(|| panic!("fixture token {tok:?}"));
            bytes.push(u8::from_str_radix(hex, 16).unwrap());
        }
    }
    assert_eq!(out.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["ACK", "FORK", "EXEC", "EXIT"]);
    assert!(out.iter().all(|(_, d)| d.len() == 76));
    out
}

/// True when `CI=true`: skips are failures there.
pub(crate) fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns false, printing why) or, under CI, fails.
pub(crate) fn skip(test: &str, reason: &str) -> bool {
    if under_ci() {
        panic!("{test}: cannot run under CI=true: {reason}");
    }
    eprintln!("{test}: skipped: {reason}");
    false
}

/// The `tshark` to use, or a skip.
pub(crate) fn tshark_or_skip(test: &str) -> Option<PathBuf> {
    let found = Command::new("tshark").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        Some(PathBuf::from("tshark"))
    } else {
        skip(test, "tshark is not installed (apt-get install tshark)");
        None
    }
}
