//! Any bytes as the data of a proc connector message: `ProcEvent::parse` never panics, and whatever it decodes
//! emits as a `struct proc_event` of `wire_len()` bytes (40 for every kind this crate knows) that parses back to
//! the same value (an unknown kind: with the length it kept) and prints.
#![no_main]

use cnlink::wire::proc_event::{PROC_EVENT_HDRLEN, UNKNOWN_DATA_MAX};
use cnlink::wire::{EventData, ProcEvent, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ProcEvent::parse(data) {
        Ok(ev) => {
            let mut out = [0u8; PROC_EVENT_HDRLEN + UNKNOWN_DATA_MAX];
            let n = ev.wire_len();
            assert_eq!(ev.emit(&mut out), Ok(n));
            let back = ProcEvent::parse(&out[..n]);
            let expected = match ev.data {
                EventData::Unknown { what, data, .. } => {
                    ProcEvent { data: EventData::Unknown { what, len: (n - PROC_EVENT_HDRLEN) as u16, data }, ..ev }
                }
                _ => ev,
            };
            assert_eq!(back, Ok(expected), "emit then parse changed the event");
            assert_eq!(ev.data.what(), u32::from_ne_bytes(out[..4].try_into().unwrap()));
            let _ = ev.data.subject();
            let _ = ev.data.exit_status().map(|s| s.to_string());
            let _ = ev.to_string();
        }
        Err(WireError::Truncated { needed, got }) => assert!(got == data.len() && needed > got),
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
