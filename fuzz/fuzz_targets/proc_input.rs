//! Any bytes as a subscription request: `ProcInput::parse` accepts exactly the 4- and 8-byte forms, and what it
//! accepts emits back to the same bytes.
#![no_main]

use cnlink::wire::{ProcInput, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ProcInput::parse(data) {
        Ok(input) => {
            let (bytes, n) = input.to_bytes();
            assert_eq!(&bytes[..n], data, "emit does not give back the parsed bytes");
            if let ProcInput::Filtered { events, .. } = input {
                let _ = events.to_string();
                let _ = events.admits(u32::from_ne_bytes(data[..4].try_into().unwrap()), 1);
            }
        }
        Err(WireError::LengthMismatch { claimed, .. }) => {
            assert!(claimed == data.len() && data.len() != 4 && data.len() != 8)
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
});
