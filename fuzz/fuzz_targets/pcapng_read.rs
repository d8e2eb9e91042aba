//! Any bytes as a capture file: the slice and stream readers never panic, agree block for block, report damage
//! exactly where they stopped, and every record they decode emits and parses back to itself.
#![no_main]

use cnlink_capture::{Block, ReadError, Reader, Record, StreamReader};
use libfuzzer_sys::fuzz_target;

/// Emits `r` and parses it back; strings cut at 65535 bytes by the encoder are left out of the comparison.
fn check_record(r: &Record) {
    if let Record::Host(h) = r {
        let strings = [&h.host_id, &h.boot_id, &h.kernel_release, &h.online_cpus, &h.hostname, &h.machine];
        if strings.iter().any(|s| s.len() > u16::MAX as usize) {
            return;
        }
    }
    let mut v = Vec::new();
    r.emit(&mut v);
    assert_eq!(Record::parse(&v).expect("an emitted record parses").as_ref(), Some(r));
}

fuzz_target!(|data: &[u8]| {
    let mut reader = Reader::new(data);
    let mut ok = Vec::new();
    let mut damage = None;
    let mut before = 0;
    while let Some(b) = reader.next() {
        match b {
            Ok(block) => {
                assert!(reader.offset() > before && reader.offset() <= data.len() as u64);
                before = reader.offset();
                if let Block::Record(r) = &block {
                    check_record(r);
                }
                if let Block::Packet(p) = &block {
                    assert!(p.data.len() <= data.len());
                    let _ = p.is_complete();
                }
                ok.push(format!("{block:?}"));
            }
            Err(d) => {
                assert_eq!(d.offset, before, "damage is reported where reading stopped");
                assert!(d.offset <= data.len() as u64);
                let _ = d.to_string();
                damage = Some(d);
            }
        }
    }
    assert!(reader.next().is_none(), "fused");

    let mut stream = StreamReader::new(data);
    let mut i = 0;
    while let Some(b) = stream.next() {
        match b {
            Ok(block) => {
                assert_eq!(format!("{block:?}"), ok[i], "both readers decode the same block");
                i += 1;
            }
            Err(ReadError::Damage(d)) => assert_eq!(Some(d), damage),
            Err(ReadError::Io(e)) => panic!("reading a slice failed: {e}"),
        }
    }
    assert_eq!(i, ok.len());
});
