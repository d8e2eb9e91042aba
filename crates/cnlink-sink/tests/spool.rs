//! The spool on real files: order, the acked cursor, recovery of a torn tail, eviction, a full disk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use cnlink_sink::spool::{self, record::RecordKind, SpoolHandle, SpooledRecord};
use cnlink_sink::{FsyncPolicy, Identity, Sink, SinkConfig, SpoolOptions, UpstreamCounts};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnlink-sink-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn identity(boot: &str) -> Identity {
    Identity { host_id: "host.one".into(), boot_id: boot.into() }
}

fn small(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        segment_bytes: 4096,
        max_bytes: 64 << 10,
        fsync: FsyncPolicy::Never,
        buffer_bytes: 1024,
        ..SpoolOptions::new(dir)
    }
}

fn read_all(handle: &SpoolHandle) -> Vec<SpooledRecord> {
    let mut reader = handle.reader();
    let mut out = Vec::new();
    while reader.read_batch(100, &mut out) > 0 {}
    out
}

fn event(i: u64) -> Vec<u8> {
    format!("{{\"event\":\"exec\",\"n\":{i}}}").into_bytes()
}

#[test]
fn records_come_back_in_order_with_the_added_fields() {
    let dir = tempdir("order");
    let mut config = SinkConfig::new(identity("b1"), &dir);
    config.spool = small(&dir);
    let (mut sink, recovery) = Sink::open(config).unwrap();
    assert_eq!(recovery.next_seq, 1);
    for i in 0..500 {
        assert_eq!(sink.submit("exec", &event(i)).unwrap(), i + 1);
    }
    sink.flush().unwrap();
    let records = read_all(&sink.handle());
    assert_eq!(records.len(), 500);
    assert!(sink.stats().segments > 1, "4 KiB segments roll");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.kind, RecordKind::Event);
        assert_eq!(&*record.token, "exec");
        assert_eq!(&*record.host_id, "host.one");
        let value: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
        assert_eq!(value["sink_seq"], i as u64 + 1);
        assert_eq!(value["n"], i as u64);
        assert_eq!(value["boot_id"], "b1");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn acks_delete_segments_and_reopen_resumes_after_the_cursor() {
    let dir = tempdir("resume");
    let opts = small(&dir);
    let (mut writer, handle, _) = spool::open(&opts, identity("b1")).unwrap();
    for i in 0..300 {
        writer.append(RecordKind::Event, "exec", &[&event(i)]).unwrap();
    }
    writer.flush().unwrap();
    let segments_before = handle.stats().segments;
    handle.ack_through(200, 200);
    handle.persist().unwrap();
    assert!(handle.stats().segments < segments_before);
    assert_eq!(handle.stats().lag_records, 100);
    drop((writer, handle));

    let (mut writer, handle, recovery) = spool::open(&opts, identity("b1")).unwrap();
    assert_eq!((recovery.next_seq, recovery.pending_records, recovery.torn), (301, 100, 0));
    let records = read_all(&handle);
    assert_eq!(records.first().map(|r| r.seq), Some(201));
    assert_eq!(records.len(), 100);
    assert_eq!(writer.append(RecordKind::Event, "exec", &[b"{}"]).unwrap(), 301);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_torn_tail_is_cut_counted_and_its_number_skipped() {
    let dir = tempdir("torn");
    let opts = small(&dir);
    let (mut sink, _) = {
        let mut config = SinkConfig::new(identity("b1"), &dir);
        config.spool = opts.clone();
        Sink::open(config).unwrap()
    };
    for i in 0..10 {
        sink.submit("exec", &event(i)).unwrap();
    }
    sink.flush().unwrap();
    drop(sink);
    // Half a record at the end of the active segment, as a write cut short leaves it.
    let mut segs: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let mut whole = Vec::new();
    spool::record::emit_record(&mut whole, 11, RecordKind::Event, "exec", &[b"{\"n\":10}"]);
    let len_before = fs::metadata(last).unwrap().len();
    fs::OpenOptions::new().append(true).open(last).unwrap().write_all(&whole[..whole.len() - 3]).unwrap();

    let mut config = SinkConfig::new(identity("b1"), &dir);
    config.spool = opts;
    let (mut sink, recovery) = Sink::open(config).unwrap();
    assert_eq!((recovery.torn, recovery.next_seq), (1, 12));
    assert_eq!(fs::metadata(last).unwrap().len(), len_before);
    assert_eq!(sink.submit("exec", &event(11)).unwrap(), 12);
    sink.write_ledger(std::time::Instant::now(), &UpstreamCounts::default(), true).unwrap();
    let records = read_all(&sink.handle());
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=10).chain([12, 13]).collect::<Vec<_>>());
    let ledger = cnlink_sink::LedgerRecord::parse(&records.last().unwrap().payload).unwrap();
    assert_eq!((ledger.spool_torn, ledger.first_seq, ledger.last_seq), (1, 1, 13));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn past_the_limit_the_oldest_segments_go_and_are_counted_exactly() {
    let dir = tempdir("evict");
    let opts = small(&dir);
    let (mut writer, handle, _) = spool::open(&opts, identity("b1")).unwrap();
    let mut written = 0u64;
    for i in 0..5000 {
        writer.append(RecordKind::Event, "exec", &[&event(i)]).unwrap();
        written += 1;
    }
    writer.flush().unwrap();
    let stats = handle.stats();
    assert!(stats.spool_bytes <= opts.max_bytes, "{stats:?}");
    assert!(stats.state.evicted > 0);
    let records = read_all(&handle);
    // Every record is either still in the spool or counted as evicted, and the survivors are the newest.
    assert_eq!(records.len() as u64 + stats.state.evicted, written);
    assert_eq!(records.last().unwrap().seq, written);
    assert_eq!(records.first().unwrap().seq, stats.state.evicted_through + 1);
    drop((writer, handle));
    // The count is durable.
    let (_, handle, _) = spool::open(&opts, identity("b1")).unwrap();
    assert_eq!(handle.stats().state.evicted, stats.state.evicted);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_new_boot_starts_its_own_counters_and_segment() {
    let dir = tempdir("boot");
    let opts = small(&dir);
    let (mut writer, _, _) = spool::open(&opts, identity("b1")).unwrap();
    writer.append(RecordKind::Event, "exec", &[b"{}"]).unwrap();
    writer.flush().unwrap();
    drop(writer);
    let (mut writer, handle, recovery) = spool::open(&opts, identity("b2")).unwrap();
    assert_eq!(recovery.next_seq, 2);
    assert_eq!(handle.stats().state.boot_first_seq, 2);
    writer.append(RecordKind::Event, "exec", &[b"{}"]).unwrap();
    writer.flush().unwrap();
    let records = read_all(&handle);
    let boots: Vec<&str> = records.iter().map(|r| &*r.boot_id).collect();
    assert_eq!(boots, ["b1", "b2"]);
    fs::remove_dir_all(&dir).unwrap();
}
