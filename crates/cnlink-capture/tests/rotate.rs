//! The rotating writer: files by size and by age, at most N kept, each replayable alone, flushed as promised.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink_capture::{
    Block, FileHeader, HostInfo, Note, Reader, Record, RotateConfig, RotateLimit, RotatingWriter, Snapshot,
    SnapshotReason,
};

fn header() -> FileHeader {
    FileHeader::netlink(&[11])
        .with_host(HostInfo { cpu_count: 2, kernel_release: "6.18.0".into(), ..Default::default() })
        .with_record(Record::Note(Note { timestamp_ns: 1, text: "session".into() }))
}

/// A state function whose snapshots carry a counter, and the counter.
fn counting_state() -> (impl FnMut() -> Record, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let c = n.clone();
    let f = move || {
        let i = c.fetch_add(1, Ordering::SeqCst) + 1;
        let data = i.to_le_bytes().to_vec();
        Record::Snapshot(Snapshot { reason: SnapshotReason::Rotation, encoding: 7, timestamp_ns: i, data })
    };
    (f, n)
}

/// What a writer thread does before each write (and when idle, with `next` 0): a new file when due, started with
/// the state.
fn rotate_if_due(w: &mut RotatingWriter, now: Instant, next: u64, state: &mut impl FnMut() -> Record) {
    if w.rotation_due(now, next) {
        w.rotate(now, &[state()]).unwrap();
    }
}

/// What one file holds: (kinds of its leading blocks, rotation snapshot counter, packet sequence numbers).
fn contents(path: &Path) -> (Vec<&'static str>, Option<u64>, Vec<u32>) {
    let bytes = std::fs::read(path).unwrap();
    let mut lead = Vec::new();
    let mut snapshot = None;
    let mut seqs = Vec::new();
    for b in Reader::new(&bytes) {
        match b.unwrap_or_else(|d| panic!("{}: {d}", path.display())) {
            Block::Section(_) => lead.push("section"),
            Block::Interface { .. } => lead.push("interface"),
            Block::Record(Record::Host(_)) => lead.push("host"),
            Block::Record(Record::Note(n)) if n.text == "session" => lead.push("note"),
            Block::Record(Record::Snapshot(s)) => {
                assert_eq!((s.reason, s.encoding), (SnapshotReason::Rotation, 7));
                assert_eq!(s.data, s.timestamp_ns.to_le_bytes());
                lead.push("snapshot");
                snapshot = Some(s.timestamp_ns);
            }
            Block::Packet(p) => seqs.push(u32::from_ne_bytes(p.data[..4].try_into().unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    lead.truncate(5);
    (lead, snapshot, seqs)
}

#[test]
fn size_rotation_keeps_the_newest_files_each_replayable_alone() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 4096;
    let config = RotateConfig {
        limit: Some(RotateLimit::Size(limit)),
        max_files: Some(3),
        ..RotateConfig::single(dir.path().join("cap.pcapng"))
    };
    let (mut state, calls) = counting_state();
    let t0 = Instant::now();
    let mut w = RotatingWriter::create(config, header(), t0).unwrap();
    for i in 0u32..300 {
        // A datagram of 76 bytes whose first word is its sequence number.
        let mut d = [0u8; 76];
        d[..4].copy_from_slice(&i.to_ne_bytes());
        rotate_if_due(&mut w, t0, 64 + 76, &mut state);
        w.write_datagram(t0, 1_000 + u64::from(i), 11, &d).unwrap();
    }
    let files = w.finish().unwrap();
    let rotations = calls.load(Ordering::SeqCst);
    assert!(rotations >= 5, "300 packets of 124 bytes make more than 5 files of 4 KiB: {rotations}");
    assert_eq!(files.len(), 3);
    let mut on_disk: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    on_disk.sort();
    assert_eq!(on_disk, files, "older files are deleted");
    let first = rotations - 1; // file numbers start at 1; the first file has no rotation snapshot
    let mut expected_seq = None;
    for (k, f) in files.iter().enumerate() {
        let number = first + k as u64;
        assert_eq!(f.file_name().unwrap().to_str().unwrap(), format!("cap-{number:06}.pcapng"));
        // What follows the head (header blocks, the rotation snapshot) is within the limit.
        let head = {
            let mut w = cnlink_capture::CaptureWriter::new(Vec::new(), &header()).unwrap();
            w.write_record(&counting_state().0()).unwrap();
            w.bytes_written()
        };
        assert!(std::fs::metadata(f).unwrap().len() <= limit + head, "{} is within the limit", f.display());
        let (lead, snapshot, seqs) = contents(f);
        assert_eq!(lead, ["section", "interface", "host", "note", "snapshot"], "{}", f.display());
        assert_eq!(snapshot, Some(number - 1), "the snapshot taken when file {number} began");
        assert!(!seqs.is_empty());
        if let Some(next) = expected_seq {
            assert_eq!(seqs[0], next, "no packet lost between files");
        }
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
        expected_seq = Some(seqs.last().unwrap() + 1);
    }
    assert_eq!(expected_seq, Some(300), "the last file ends with the last packet");
}

#[test]
fn duration_rotation_follows_the_callers_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = RotateConfig {
        limit: Some(RotateLimit::Duration(Duration::from_secs(10))),
        ..RotateConfig::single(dir.path().join("cap"))
    };
    let (mut state, _) = counting_state();
    let t0 = Instant::now();
    let mut w = RotatingWriter::create(config, header(), t0).unwrap();
    let at = |s: u64| t0 + Duration::from_secs(s);
    for s in [0, 3, 9, 10, 15, 25] {
        rotate_if_due(&mut w, at(s), 68, &mut state);
        w.write_datagram(at(s), s, 11, &(s as u32).to_ne_bytes()).unwrap();
    }
    assert!(w.rotation_due(at(40), 0), "the last file is 15 s old and holds a packet");
    rotate_if_due(&mut w, at(40), 0, &mut state);
    assert!(!w.rotation_due(at(80), 0), "the new file holds only its header blocks");
    let files = w.finish().unwrap();
    let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(names, ["cap-000001", "cap-000002", "cap-000003", "cap-000004"]);
    let packets: Vec<Vec<u32>> = files.iter().map(|f| contents(f).2).collect();
    assert_eq!(packets, [vec![0, 3, 9], vec![10, 15], vec![25], vec![]]);
}

#[test]
fn blocks_reach_the_file_by_the_flush_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.pcapng");
    let lazy = RotateConfig { flush_interval: Duration::from_secs(3600), ..RotateConfig::single(&path) };
    let t0 = Instant::now();
    let mut w = RotatingWriter::create(lazy, header(), t0).unwrap();
    let header_len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(header_len, w.current_bytes(), "the header blocks are on disk at once");
    w.write_datagram(t0, 1, 11, &[0; 76]).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), header_len, "buffered");
    w.tick(t0 + Duration::from_secs(3600)).unwrap();
    let after_tick = std::fs::metadata(&path).unwrap().len();
    assert_eq!(after_tick, w.current_bytes(), "flushed once the interval passed");
    w.write_datagram(t0 + Duration::from_secs(3601), 2, 11, &[0; 76]).unwrap();
    w.flush().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), w.current_bytes(), "flushed on request");
    // What is on disk while the writer is still open reads whole.
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(Reader::new(&bytes).filter(|b| matches!(b, Ok(Block::Packet(_)))).count(), 2);

    let eager_path = dir.path().join("eager.pcapng");
    let eager = RotateConfig { flush_interval: Duration::ZERO, ..RotateConfig::single(&eager_path) };
    let mut w = RotatingWriter::create(eager, header(), t0).unwrap();
    w.rotate(t0, &[]).unwrap();
    assert_eq!(w.files().count(), 1, "without a limit, rotating changes nothing");
    w.write_datagram(t0, 1, 11, &[0; 76]).unwrap();
    assert_eq!(std::fs::metadata(&eager_path).unwrap().len(), w.current_bytes(), "every block flushed");
    assert_eq!(w.finish().unwrap(), [eager_path]);
}
