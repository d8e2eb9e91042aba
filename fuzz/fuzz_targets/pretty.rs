//! Any bytes through `Pretty`, the printer the CLI's `decode` and `listen` use: it never panics, it has
//! something to say about anything longer than netlink padding, and nothing in it can act on a terminal (no
//! control character but the newlines between lines).
#![no_main]

use cnlink::wire::Pretty;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let shown = Pretty(data).to_string();
    assert_eq!(shown.is_empty(), data.len() < 4, "{shown}");
    assert!(shown.chars().all(|c| c == '\n' || !c.is_control()), "{shown:?}");
});
