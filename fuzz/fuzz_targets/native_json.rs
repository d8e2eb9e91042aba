//! Any bytes as a line of `cnlink proc`'s native JSON (as `cnlink collect` takes it from the network): the reader
//! never panics, and what it reads is consistent.
#![no_main]

use cnlink_procmon::{native_json, MonitorItem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match native_json::read(data) {
        Ok(MonitorItem::Record(r)) => {
            if let Some(p) = &r.process {
                assert_eq!(Some(p.entity_id), r.entity_id);
                if let Some(a) = &p.program.argv {
                    assert_eq!(a.args().count(), a.count as usize);
                }
            }
            let _ = r.entry_leader();
        }
        Ok(MonitorItem::Lost(l)) => assert!(l.cpu.is_none()),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
