//! Any bytes as the data of a proc connector message: `ProcEvent::parse` never panics, and whatever it decodes
//! emits as a 40-byte `struct proc_event` that parses back to the same value and prints.
#![no_main]

use cnlink::wire::proc_event::PROC_EVENT_LEN;
use cnlink::wire::{ProcEvent, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ProcEvent::parse(data) {
        Ok(ev) => {
            let mut out = [0u8; PROC_EVENT_LEN];
            assert_eq!(ev.emit(&mut out), Ok(PROC_EVENT_LEN));
            assert_eq!(ProcEvent::parse(&out), Ok(ev), "emit then parse changed the event");
            assert_eq!(ev.data.what(), u32::from_ne_bytes(out[..4].try_into().unwrap()));
            let _ = ev.data.subject();
            let _ = ev.data.exit_status().map(|s| s.to_string());
            let _ = ev.to_string();
        }
        Err(WireError::Truncated { needed, got }) => assert!(got == data.len() && needed > got),
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
