//! Any bytes as the contents of `/proc/PID/stat`, `cmdline`, `status`, `cgroup` or an `exe`/`ns` link: the
//! parsers never panic, keep within their bounds, and what they keep is exact.
#![no_main]

use cnlink_procmon::container::classify_path;
use cnlink_procmon::procfs::parse::{
    cgroup_lines, parse_cmdline, parse_exe, parse_ns_link, parse_stat, parse_status, MAX_NS_LEVELS, MAX_STAT_NAME,
};
use cnlink_procmon::{BStr, CgroupInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(s) = parse_stat(data) {
        assert!(s.name.len() <= MAX_STAT_NAME);
        let _ = s.kthread();
    }

    // Small limits so that truncation is exercised; without truncation the arguments are exactly the input.
    let max_args = usize::from(data.first().copied().unwrap_or(0) % 16);
    let a = parse_cmdline(data, max_args, 256, false);
    assert!(a.bytes.len() <= 256 && a.count as usize <= max_args);
    assert_eq!(a.args().count(), a.count as usize);
    if !a.truncated && !data.is_empty() {
        let body = data.strip_suffix(b"\0").unwrap_or(data);
        assert_eq!(a.args().collect::<Vec<_>>().join(&0u8), body);
    }

    if let Some(st) = parse_status(data) {
        assert!(st.nspid.len() <= MAX_NS_LEVELS);
    }

    let e = parse_exe(data, 64);
    assert!(e.path.len() <= 64);
    assert!(!e.memfd || e.path.starts_with(b"/memfd:"));
    let _ = parse_ns_link(data);

    for line in cgroup_lines(data, 16) {
        let c = classify_path(line.path);
        if let Some(c) = c.container {
            assert!(c.id.len() == 64 && c.id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
    let info = CgroupInfo::parse(data, false, 16);
    assert!(
        info.path.is_empty() || info.path == "/" || data.windows(info.path.len()).any(|w| w == info.path.as_bytes())
    );

    // Display never lets a control character through.
    let shown = BStr::from(data).to_string();
    assert!(!shown.chars().any(char::is_control));
});
