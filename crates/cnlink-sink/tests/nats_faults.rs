//! Fault tests against real servers: a producer submits numbered events at a steady rate through the spool and
//! the publisher while a fault strikes; then a collector and the auditor check that every event is in the
//! stream exactly once, or accounted for by the ledger.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink_sink::publish::{ConnectConfig, PublishConfig, Publisher, PublisherStatus, StreamConfig};
use cnlink_sink::spool::record::{emit_record, Record, RecordKind};
use cnlink_sink::{FsyncPolicy, Identity, Sink, SinkConfig, SpoolOptions, SpoolStats, UpstreamCounts};
use common::{collect_all, server_binary, Collection, NatsServer, TempDir};
use rustix::process::Signal;

const BOOT: &str = "boot-1";
const WINDOW: usize = 256;

fn identity() -> Identity {
    Identity { host_id: "test.host".into(), boot_id: BOOT.into() }
}

fn publish_config(servers: &str, replicas: usize) -> PublishConfig {
    let mut config = PublishConfig::new(ConnectConfig::parse(servers).unwrap());
    config.stream = StreamConfig { replicas, ..StreamConfig::default() };
    config.ack_timeout = Duration::from_secs(2);
    config.max_backoff = Duration::from_secs(1);
    config.window = WINDOW;
    config
}

/// Submits events `from..from+count` (payload field `n`) in batches of 50 every 10 ms (5,000 a second),
/// with a ledger every second and a final one; returns each event's sink sequence number.
fn produce(sink: &mut Sink, from: u64, count: u64, progress: &AtomicU64) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(count as usize);
    let start = Instant::now();
    let upstream = UpstreamCounts { kernel_lost_per_cpu: vec![0, 0], ..Default::default() };
    for i in 0..count {
        let n = from + i;
        let json = format!("{{\"event\":\"exec\",\"n\":{n},\"pad\":\"{:0>64}\"}}", n);
        seqs.push(sink.submit("exec", json.as_bytes()).unwrap());
        if (i + 1) % 50 == 0 {
            let _ = sink.flush();
            progress.store(i + 1, Ordering::SeqCst);
            if sink.ledger_due(Instant::now()) {
                let _ = sink.write_ledger(Instant::now(), &upstream, false);
            }
            let due = start + Duration::from_millis(10 * (i + 1) / 50);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let _ = sink.write_ledger(Instant::now(), &upstream, true);
    progress.store(count, Ordering::SeqCst);
    seqs
}

struct Outcome {
    seqs: Vec<u64>,
    spool: SpoolStats,
    status: PublisherStatus,
    found: Collection,
}

/// Runs the producer and the publisher with `fault` on another thread (it gets the progress counter), drains,
/// and collects everything.
fn scenario(
    servers: &str,
    spool: SpoolOptions,
    replicas: usize,
    count: u64,
    fault: impl FnOnce(&AtomicU64) + Send + 'static,
) -> Outcome {
    let mut config = SinkConfig::new(identity(), &spool.dir);
    config.spool = spool;
    config.ledger_interval = Duration::from_secs(1);
    let (mut sink, _) = Sink::open(config).unwrap();
    let publisher = Publisher::start(sink.handle(), publish_config(servers, replicas)).unwrap();
    // A new cluster elects its JetStream leader first: the first attempts may fail; wait for the stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !publisher.status().stream_ready {
        assert!(Instant::now() < deadline, "stream not ready: {:?}", publisher.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    let progress = Arc::new(AtomicU64::new(0));
    let fault = {
        let progress = progress.clone();
        std::thread::spawn(move || fault(&progress))
    };
    let seqs = produce(&mut sink, 0, count, &progress);
    fault.join().expect("fault thread");
    let drained = publisher.drain(Duration::from_secs(90));
    let status = publisher.status();
    let spool = publisher.spool_stats();
    assert!(drained, "spool not drained in 90 s: {status:?} {spool:?}");
    publisher.stop();
    let found = collect_all(servers, "CNLINK", Duration::from_secs(90));
    Outcome { seqs, spool, status, found }
}

/// Every event is in the stream exactly once, or its sequence number is one the ledger accounts for; the
/// stream holds them in sink order; the auditor agrees. Returns the number of events missing.
fn check(outcome: &Outcome) -> u64 {
    let found = &outcome.found;
    let report = found.auditor.report();
    assert!(report.is_complete(), "audit: {report:#?}");
    assert_eq!(report.boots.len(), 1, "{report:#?}");
    let boot = &report.boots[0];
    assert_eq!(boot.duplicates, 0, "the server's dedup removes every repeat");
    assert!(boot.saw_final_ledger);
    let newest = found.ledgers.iter().max_by_key(|l| l.sink_seq).expect("a ledger");
    assert!(
        (newest.spool_losses_certain()..=newest.spool_losses_possible()).contains(&boot.missing),
        "missing {} within the ledger's spool losses: {newest:?}",
        boot.missing
    );

    let mut by_n: HashMap<u64, u32> = HashMap::new();
    for &(_, _, n) in &found.events {
        *by_n.entry(n).or_default() += 1;
    }
    let missing_seqs: std::collections::HashSet<u64> = boot.missing_ranges.iter().flat_map(|&(a, b)| a..=b).collect();
    let mut missing_events = 0;
    for (n, &seq) in outcome.seqs.iter().enumerate() {
        match by_n.get(&(n as u64)) {
            Some(1) => {}
            Some(k) => panic!("event {n} is in the stream {k} times"),
            None => {
                missing_events += 1;
                if boot.missing_ranges.len() < cnlink_sink::audit::MAX_LISTED_RANGES {
                    assert!(missing_seqs.contains(&seq), "event {n} (seq {seq}) lost unaccounted");
                }
            }
        }
    }
    // The spool drains in order; only a reconnect can put a record behind later ones (the client sends what
    // it still held from the old connection while the publisher starts again from the cursor): never by more
    // than the window in flight, twice.
    let mut stream_order = found.events.clone();
    stream_order.sort();
    let mut highest = 0;
    let mut behind = 0;
    for &(_, seq, _) in &stream_order {
        highest = u64::max(highest, seq);
        behind = u64::max(behind, highest - seq);
    }
    assert!(behind <= 2 * WINDOW as u64, "a record {behind} places behind");
    assert_eq!(found.stats.malformed, 0);
    missing_events
}

fn spool_options(dir: &Path) -> SpoolOptions {
    SpoolOptions {
        segment_bytes: 1 << 20,
        max_bytes: 256 << 20,
        fsync: FsyncPolicy::Every(Duration::from_millis(100)),
        ..SpoolOptions::new(dir)
    }
}

#[test]
fn server_killed_mid_run_and_restarted_loses_nothing() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("kill");
    let server = Arc::new(std::sync::Mutex::new(NatsServer::start(&binary, &tmp.path().join("store"), &[])));
    let url = server.lock().unwrap().url();
    let fault_server = server.clone();
    let outcome = scenario(&url, spool_options(&tmp.path().join("spool")), 1, 20_000, move |p| {
        wait_for(p, 6_000);
        fault_server.lock().unwrap().kill();
        std::thread::sleep(Duration::from_millis(1500));
        fault_server.lock().unwrap().restart();
    });
    assert_eq!(check(&outcome), 0);
    assert_eq!(outcome.found.events.len(), 20_000);
    assert!(outcome.status.errors > 0, "the kill was seen: {:?}", outcome.status);
    assert_eq!(outcome.spool.state.evicted, 0);
}

#[test]
fn server_paused_ten_seconds_spool_grows_then_drains_in_order() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("pause");
    let server = Arc::new(NatsServer::start(&binary, &tmp.path().join("store"), &[]));
    let fault_server = server.clone();
    let outcome = scenario(&server.url(), spool_options(&tmp.path().join("spool")), 1, 30_000, move |p| {
        wait_for(p, 5_000);
        fault_server.pause();
        std::thread::sleep(Duration::from_secs(10));
        fault_server.resume();
    });
    assert_eq!(check(&outcome), 0);
    assert_eq!(outcome.found.events.len(), 30_000);
    // While paused, the rest of the run (about 5 s of events) waited in the spool.
    assert!(outcome.spool.high_water_bytes > 1 << 20, "spool grew: {:?}", outcome.spool);
}

#[test]
fn spool_limit_reached_while_server_down_drops_oldest_counted_exactly() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("limit");
    let server = Arc::new(std::sync::Mutex::new(NatsServer::start(&binary, &tmp.path().join("store"), &[])));
    let url = server.lock().unwrap().url();
    let spool = SpoolOptions {
        segment_bytes: 64 << 10,
        max_bytes: 512 << 10,
        fsync: FsyncPolicy::Never,
        ..SpoolOptions::new(tmp.path().join("spool"))
    };
    let fault_server = server.clone();
    let outcome = scenario(&url, spool, 1, 20_000, move |p| {
        wait_for(p, 3_000);
        fault_server.lock().unwrap().kill();
        // Down for the rest of the run: about 3.4 MB of events into a 512 KiB spool.
        wait_for(p, 20_000);
        fault_server.lock().unwrap().restart();
    });
    let missing = check(&outcome);
    let newest = outcome.found.ledgers.iter().max_by_key(|l| l.sink_seq).unwrap();
    assert!(newest.spool_evicted > 1000, "{newest:?}");
    assert_eq!(newest.spool_evicted, outcome.spool.state.evicted);
    let report = outcome.found.auditor.report();
    assert_eq!(report.boots[0].lost.spool_evicted, report.boots[0].missing);
    assert_eq!(report.boots[0].lost.transit, 0);
    // Events and ledger records both use numbers: the events missing are at most the records evicted.
    assert!(missing > 0 && missing <= newest.spool_evicted + newest.spool_evicted_unconfirmed);
    // The oldest went: every event missing was in an evicted segment, and every event after the last evicted
    // segment is in the stream.
    let present: std::collections::HashSet<u64> = outcome.found.events.iter().map(|e| e.2).collect();
    let evicted_through = outcome.spool.state.evicted_through;
    assert!(evicted_through > 0);
    for (n, &seq) in outcome.seqs.iter().enumerate() {
        if seq > evicted_through {
            assert!(present.contains(&(n as u64)), "event {n} (seq {seq}) newer than every eviction is missing");
        }
    }
}

#[test]
fn three_node_cluster_losing_a_node_loses_nothing() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("cluster");
    let nodes = Arc::new(std::sync::Mutex::new(common::cluster(&binary, tmp.path())));
    let urls = nodes.lock().unwrap().iter().map(|n| n.url()).collect::<Vec<_>>().join(",");
    let fault_nodes = nodes.clone();
    let outcome = scenario(&urls, spool_options(&tmp.path().join("spool")), 3, 20_000, move |p| {
        wait_for(p, 6_000);
        fault_nodes.lock().unwrap()[0].kill();
    });
    assert_eq!(check(&outcome), 0);
    assert_eq!(outcome.found.events.len(), 20_000);
}

fn wait_for(progress: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < deadline, "producer stuck below {n}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- cnlink killed with SIGKILL in the middle of a segment ----

const CHILD_ENV: &str = "CNLINK_SINK_TEST_CHILD";

/// The child's side: `CNLINK_SINK_TEST_CHILD=spool_dir,servers,from,count` runs a producer and publisher and
/// prints `spooled N` after each flush (N events on disk), then `drained` at the end.
#[test]
fn child_producer() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = args.split(',').collect();
    let (dir, servers, from, count) = (
        parts[0],
        parts[1..parts.len() - 2].join(","),
        parts[parts.len() - 2].parse::<u64>().unwrap(),
        parts[parts.len() - 1].parse::<u64>().unwrap(),
    );
    let mut config = SinkConfig::new(identity(), dir);
    config.spool = SpoolOptions { segment_bytes: 256 << 10, ..spool_options(Path::new(dir)) };
    config.ledger_interval = Duration::from_secs(1);
    let (mut sink, recovery) = Sink::open(config).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "recovered torn={} next_seq={}", recovery.torn, recovery.next_seq).unwrap();
    let publisher = Publisher::start(sink.handle(), publish_config(&servers, 1)).unwrap();
    let upstream = UpstreamCounts::default();
    for i in 0..count {
        let json = format!("{{\"event\":\"exec\",\"n\":{}}}", from + i);
        sink.submit("exec", json.as_bytes()).unwrap();
        if (i + 1) % 50 == 0 {
            sink.flush().unwrap();
            writeln!(out, "spooled {}", from + i + 1).unwrap();
            out.flush().unwrap();
            if sink.ledger_due(Instant::now()) {
                sink.write_ledger(Instant::now(), &upstream, false).unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sink.write_ledger(Instant::now(), &upstream, true).unwrap();
    assert!(publisher.drain(Duration::from_secs(60)), "{:?}", publisher.status());
    publisher.stop();
    writeln!(out, "drained").unwrap();
}

fn spawn_child(spool: &Path, servers: &str, from: u64, count: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_producer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{},{servers},{from},{count}", spool.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn publisher_killed_mid_segment_resumes_from_the_cursor() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("sigkill");
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let spool = tmp.path().join("spool");

    // First run: killed once 8,000 events are on disk.
    let mut child = spawn_child(&spool, &server.url(), 0, 1_000_000);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut spooled = 0;
    while spooled < 8_000 {
        let line = lines.next().expect("child output").unwrap();
        if let Some(n) = line.strip_prefix("spooled ") {
            spooled = n.parse().unwrap();
        }
    }
    common::signal_pid(child.id(), Signal::KILL);
    child.wait().unwrap();

    // The write the kill cut short: half a record at the end of the last segment, unless one is there.
    let mut segments: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let (_, mut at) = cnlink_sink::spool::record::SegmentHeader::parse(&bytes).unwrap();
    assert!(bytes.len() > at, "killed with records in the active segment");
    let mut last_seq = 0;
    while let Ok((record, used)) = Record::parse(&bytes[at..]) {
        last_seq = record.seq;
        at += used;
    }
    if at == bytes.len() {
        let mut torn = Vec::new();
        emit_record(&mut torn, last_seq + 1, RecordKind::Event, "exec", &[b"{\"n\":\"torn\"}"]);
        let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
        file.write_all(&torn[..torn.len() / 2]).unwrap();
    }

    // Second run on the same spool: it resumes, counts the torn record, and finishes.
    let child = spawn_child(&spool, &server.url(), 1_000_000, 5_000);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "second run failed: {text}");
    assert!(text.contains("recovered torn=1"), "{text}");
    assert!(text.contains("drained"), "{text}");

    let found = collect_all(&server.url(), "CNLINK", Duration::from_secs(90));
    let report = found.auditor.report();
    assert!(report.is_complete(), "{report:#?}");
    let boot = &report.boots[0];
    assert_eq!((boot.duplicates, boot.missing, boot.lost.spool_torn), (0, 1, 1));
    let mut by_n: HashMap<u64, u32> = HashMap::new();
    for &(_, _, n) in &found.events {
        *by_n.entry(n).or_default() += 1;
    }
    assert!(by_n.values().all(|&k| k == 1), "no event twice");
    for n in (0..spooled).chain(1_000_000..1_005_000) {
        assert_eq!(by_n.get(&n), Some(&1), "event {n} (on disk before the kill, or of the second run)");
    }
}
