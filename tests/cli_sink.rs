//! `cnlink proc --sink` and `cnlink collect --audit` end to end, against real `nats-server`s on loopback, with
//! faults: the broker SIGKILLed mid-storm and restarted, SIGSTOPped for 10 s, the spool limit reached, cnlink
//! SIGKILLed mid-segment and restarted on its spool, and a three-node cluster (R3 stream) losing a node.
//!
//! Each scenario runs a thread storm in a helper process (this test binary, run as [`storm_child`]) that
//! records every thread id it makes; `cnlink collect --audit` then reads the stream, and for each of the
//! storm's threads the collected fork and exit events must equal what the storm made, minus exactly what the
//! ledger reports. The scenarios run one at a time (the proc connector is machine-wide).

mod cli_common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cli_common::{cnlink, http_get, metric_sample, promtool_accepts, root_or_skip};
use cnlink_sink::spool::record::{Record, SegmentHeader};
use cnlink_testnats::{server_binary, signal_pid, NatsServer, TempDir};
use rustix::process::Signal;
use serde_json::Value;

/// One scenario at a time: every `cnlink proc` sees every storm.
static SERIAL: Mutex<()> = Mutex::new(());

const STORM_ENV: &str = "CNLINK_SINK_TEST_STORM";

// ---- the storm: threads of a helper process, each one's id recorded ----

/// The helper's side: `CNLINK_SINK_TEST_STORM=COUNT,RATE` makes COUNT threads (spawn, join) at RATE a
/// second, printing `spawned N` every 250 and, at the end, `tids T1 T2 ...`.
#[test]
fn storm_child() {
    let Ok(spec) = std::env::var(STORM_ENV) else { return };
    let (count, rate) = spec.split_once(',').unwrap();
    let (count, rate): (u64, u64) = (count.parse().unwrap(), rate.parse().unwrap());
    let start = Instant::now();
    let mut tids = Vec::with_capacity(count as usize);
    for i in 0..count {
        let tid = std::thread::spawn(|| rustix::thread::gettid().as_raw_nonzero().get()).join().unwrap();
        tids.push(tid);
        if (i + 1) % 250 == 0 {
            println!("spawned {}", i + 1);
        }
        let due = start + Duration::from_micros((i + 1) * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!("tids {}", tids.iter().map(i32::to_string).collect::<Vec<_>>().join(" "));
}

/// A running storm.
struct Storm {
    child: Child,
    lines: Receiver<String>,
}

/// What a storm made: its process id and every thread id, in order.
struct Made {
    pid: i32,
    tids: Vec<i32>,
}

impl Storm {
    fn start(count: u64, rate: u64) -> Storm {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["storm_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(STORM_ENV, format!("{count},{rate}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines(child.stdout.take().unwrap());
        Storm { child, lines }
    }

    /// Waits until `n` threads were made.
    fn wait_spawned(&self, n: u64) {
        let line = wait_line(&self.lines, Duration::from_secs(60), |l| {
            l.strip_prefix("spawned ").and_then(|k| k.parse::<u64>().ok()).is_some_and(|k| k >= n)
        });
        assert!(line.is_some(), "the storm never made {n} threads");
    }

    fn finish(mut self) -> Made {
        let line = wait_line(&self.lines, Duration::from_secs(120), |l| l.starts_with("tids ")).expect("storm ends");
        let tids = line["tids ".len()..].split(' ').map(|t| t.parse().unwrap()).collect();
        let pid = self.child.id() as i32;
        assert!(self.child.wait().unwrap().success());
        Made { pid, tids }
    }
}

fn lines(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &Receiver<String>, timeout: Duration, mut want: impl FnMut(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) if want(&l) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

// ---- cnlink proc --sink ----

/// A running `cnlink proc --sink`; killed when dropped.
struct Shipper {
    child: Child,
    spool: std::path::PathBuf,
    err: Receiver<String>,
    said: Arc<Mutex<Vec<String>>>,
}

impl Shipper {
    /// Starts it and waits until it provably receives events: a marker child's exec is in its spool. At exit
    /// it waits up to 60 s for the spool to drain, unless `extra` says otherwise.
    fn start(servers: &str, spool: &Path, extra: &[&str]) -> Shipper {
        Shipper::start_with(servers, spool, extra, |_| {})
    }

    /// As [`Shipper::start`], with `configure` applied to the command (environment, ...).
    fn start_with(servers: &str, spool: &Path, extra: &[&str], configure: impl FnOnce(&mut Command)) -> Shipper {
        let mut cmd = cnlink();
        configure(&mut cmd);
        cmd.args(["proc", "--sink", servers, "--sink-spool"]).arg(spool);
        cmd.args(["--sink-ledger-interval", "1s", "--sink-ack-timeout", "2s"]);
        if !extra.contains(&"--sink-drain-timeout") {
            cmd.args(["--sink-drain-timeout", "60s"]);
        }
        let mut child = cmd
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cnlink proc");
        let raw = lines(child.stderr.take().unwrap());
        // Keep every stderr line for messages, and pass them on.
        let said = Arc::new(Mutex::new(Vec::new()));
        let (tx, err) = mpsc::channel();
        {
            let said = said.clone();
            std::thread::spawn(move || {
                for line in raw {
                    said.lock().unwrap().push(line.clone());
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let shipper = Shipper { child, spool: spool.to_owned(), err, said };
        shipper.wait_receiving();
        shipper
    }

    fn wait_receiving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let marker = Command::new("/bin/true").spawn().unwrap();
            let pid = marker.id() as i64;
            let _ = { marker }.wait();
            let seen_by = Instant::now() + Duration::from_millis(500);
            while Instant::now() < seen_by {
                if spooled(&self.spool).iter().any(|v| v["event"] == "exec" && v["pid"].as_i64() == Some(pid)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("cnlink proc --sink never spooled a marker's exec: {:?}", self.said());
    }

    fn said(&self) -> Vec<String> {
        self.said.lock().unwrap().clone()
    }

    /// SIGINT; the exit code and stderr (it drains the spool first, up to its drain timeout).
    fn stop(mut self) -> (Option<i32>, Vec<String>) {
        signal_pid(self.child.id(), Signal::INT);
        let status = wait_exit(&mut self.child, Duration::from_secs(90));
        // The stderr relay ends with the process.
        while self.err.recv_timeout(Duration::from_secs(5)).is_ok() {}
        (status, self.said())
    }

    /// SIGKILL.
    fn kill(mut self) {
        signal_pid(self.child.id(), Signal::KILL);
        wait_exit(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "cnlink did not exit within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every record in the spool's segment files, as JSON (docs/sink.md's format, read with the sink's parser).
fn spooled(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    let mut segments: Vec<_> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
    segments.sort();
    for path in segments {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let Ok((_, mut at)) = SegmentHeader::parse(&bytes) else { continue };
        while let Ok((record, used)) = Record::parse(&bytes[at..]) {
            if let Ok(v) = serde_json::from_slice(record.payload) {
                out.push(v);
            }
            at += used;
        }
    }
    out
}

/// Records in the spool above its acknowledged cursor (the `state` file's `acked_seq`, at offset 8).
fn waiting(dir: &Path) -> u64 {
    let state = std::fs::read(dir.join("state")).unwrap_or_default();
    let acked = state.get(8..16).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let highest = spooled(dir).iter().filter_map(|v| v["sink_seq"].as_u64()).max().unwrap_or(0);
    highest.saturating_sub(acked)
}

// ---- cnlink collect --audit ----

/// What `cnlink collect --audit` found.
struct Collected {
    records: Vec<Value>,
    audit: Value,
    status: Option<i32>,
    stderr: String,
}

impl Collected {
    fn ledger(&self) -> &Value {
        self.records
            .iter()
            .filter(|r| r["type"] == "ledger")
            .max_by_key(|r| r["sink_seq"].as_u64())
            .expect("a ledger record")
    }
}

fn collect(servers: &str) -> Collected {
    collect_with(servers, &[])
}

/// Starts `cnlink collect SERVERS --audit ARGS`: the child, and its stdout's and stderr's lines as they come.
fn spawn_collect(servers: &str, args: &[&str]) -> (Child, Receiver<String>, Receiver<String>) {
    let mut child = cnlink()
        .args(["collect", servers, "--audit"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    (child, out, err)
}

/// Runs `cnlink collect SERVERS --audit --idle-exit 1s EXTRA` to its end: stdout's lines, stderr, the exit status.
fn run_collect(servers: &str, extra: &[&str]) -> (Vec<String>, String, Option<i32>) {
    let (mut child, out, err) = spawn_collect(servers, &[&["--idle-exit", "1s"], extra].concat());
    let status = wait_exit(&mut child, Duration::from_secs(120));
    (out.iter().collect(), err.iter().collect::<Vec<_>>().join("\n"), status)
}

fn collect_with(servers: &str, extra: &[&str]) -> Collected {
    let (out, stderr, status) = run_collect(servers, extra);
    let mut records: Vec<Value> = out.iter().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let audit = records.pop().unwrap_or_else(|| panic!("no audit line; exit status {status:?}; stderr: {stderr}"));
    assert_eq!(audit["type"], "audit", "{audit}");
    Collected { records, audit, status, stderr }
}

/// The storm's events in the stream, per thread: (forks, exits).
fn per_thread(made: &Made, records: &[Value]) -> HashMap<i32, (u64, u64)> {
    let storm: std::collections::HashSet<i32> = made.tids.iter().copied().collect();
    let mut seen: HashMap<i32, (u64, u64)> = HashMap::new();
    let pid = i64::from(made.pid);
    for r in records {
        let (tid, fork) = match r["event"].as_str() {
            Some("fork") if r["child_tgid"].as_i64() == Some(pid) => (r["child_pid"].as_i64(), true),
            Some("exit") if r["tgid"].as_i64() == Some(pid) => (r["pid"].as_i64(), false),
            _ => continue,
        };
        let Some(tid) = tid.and_then(|t| i32::try_from(t).ok()).filter(|t| storm.contains(t)) else { continue };
        let entry = seen.entry(tid).or_default();
        if fork {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    seen
}

/// The verdict: the audit is complete, no record twice, and child by child the storms' forks and exits are in
/// the stream, minus what the ledger reports lost before the spool (kernel, queue) and in it (evicted).
/// Returns how many of the storms' events are missing.
fn check(c: &Collected, storms: &[&Made]) -> u64 {
    assert_eq!(c.status, Some(0), "collect --audit: {}\n{}", c.audit, c.stderr);
    assert_eq!(c.audit["complete"], true, "{}", c.audit);
    let boots = c.audit["boots"].as_array().unwrap();
    let ledger = c.ledger();
    for boot in boots {
        assert_eq!(boot["duplicates"], 0, "the server's dedup removes every repeat: {boot}");
        if boot["boot_id"] == ledger["boot_id"] {
            assert_eq!(boot["saw_final_ledger"], true, "{boot}");
        }
    }
    let mut ids = std::collections::HashSet::new();
    for r in &c.records {
        let id = (r["host_id"].to_string(), r["boot_id"].to_string(), r["sink_seq"].as_u64().unwrap());
        assert!(ids.insert(id), "a record twice: {r}");
    }
    let reported = ledger["kernel_lost"].as_u64().unwrap()
        + ledger["queue_lost"].as_u64().unwrap()
        + ledger["spool_evicted"].as_u64().unwrap()
        + ledger["spool_evicted_unconfirmed"].as_u64().unwrap()
        + ledger["spool_torn"].as_u64().unwrap()
        + ledger["write_dropped"].as_u64().unwrap();
    let mut missing = 0;
    for made in storms {
        let seen = per_thread(made, &c.records);
        let mut created: HashMap<i32, u64> = HashMap::new();
        for &tid in &made.tids {
            *created.entry(tid).or_default() += 1;
        }
        for (tid, &n) in &created {
            let (forks, exits) = seen.get(tid).copied().unwrap_or_default();
            assert!(forks <= n && exits <= n, "thread {tid}: made {n}, {forks} forks and {exits} exits collected");
            missing += (n - forks) + (n - exits);
        }
    }
    assert!(missing <= reported, "{missing} of the storms' events missing, the ledger reports {reported}: {ledger}");
    if reported == 0 {
        assert_eq!(missing, 0);
    }
    missing
}

fn has_line(lines: &[String], what: &str) -> bool {
    lines.iter().any(|l| l.contains(what))
}

// ---- the scenarios ----

fn setup(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, std::path::PathBuf, TempDir)> {
    if !root_or_skip(test) {
        return None;
    }
    let binary = server_binary()?;
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Some((guard, binary, TempDir::new(test)))
}

#[test]
fn broker_killed_mid_storm_and_restarted_loses_nothing() {
    let Some((_serial, binary, tmp)) = setup("sink_broker_killed") else { return };
    let mut server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let shipper = Shipper::start(&server.url(), &tmp.path().join("spool"), &[]);
    let storm = Storm::start(4_000, 1_000);
    storm.wait_spawned(1_500);
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    server.restart();
    let made = storm.finish();
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    assert!(has_line(&said, "publishing to nats://127.0.0.1"), "{said:?}");
    assert!(has_line(&said, "publishing again"), "the outage was seen and ended: {said:?}");
    assert!(has_line(&said, "at exit:") && has_line(&said, " 0 waiting"), "{said:?}");
    let collected = collect(&server.url());
    assert_eq!(check(&collected, &[&made]), 0);
}

#[test]
fn broker_paused_ten_seconds_spool_grows_then_drains() {
    let Some((_serial, binary, tmp)) = setup("sink_broker_paused") else { return };
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let spool = tmp.path().join("spool");
    let shipper = Shipper::start(&server.url(), &spool, &[]);
    let storm = Storm::start(6_000, 1_000);
    storm.wait_spawned(1_000);
    server.pause();
    let paused = Instant::now();
    let made = storm.finish();
    // The rest of the storm waits in the spool while the server is stopped.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(paused.elapsed()));
    let waiting = waiting(&spool);
    server.resume();
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    assert!(has_line(&said, " 0 waiting"), "drained after the pause: {said:?}");
    let collected = collect(&server.url());
    assert_eq!(check(&collected, &[&made]), 0);
    assert!(waiting >= 2 * 4_000, "the spool held the paused part of the storm: {waiting} records waiting");
}

#[test]
fn spool_limit_reached_drops_the_oldest_counted_exactly() {
    let Some((_serial, binary, tmp)) = setup("sink_spool_limit") else { return };
    // No server at first: the spool (512 KiB, 64 KiB segments) overflows.
    let port = cnlink_testnats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spool = tmp.path().join("spool");
    let shipper =
        Shipper::start(&url, &spool, &["--sink-spool-max", "512K", "--sink-spool-segment", "64K", "--no-enrich"]);
    let storm = Storm::start(4_000, 2_000);
    let made = storm.finish();
    let said_early = shipper.said();
    assert!(has_line(&said_early, &format!("cannot connect to {url}")), "a clear word at start: {said_early:?}");
    assert!(has_line(&said_early, "events wait in the spool"), "{said_early:?}");
    let server = NatsServer::start_on(&binary, &tmp.path().join("store"), port, &[]);
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    let collected = collect(&server.url());
    let missing = check(&collected, &[&made]);
    let ledger = collected.ledger();
    let evicted = ledger["spool_evicted"].as_u64().unwrap();
    assert!(evicted > 1_000, "the limit was reached: {ledger}");
    let boot = collected.audit["boots"].as_array().unwrap().iter().find(|b| b["boot_id"] == ledger["boot_id"]).unwrap();
    assert_eq!(boot["missing"], boot["lost"]["spool_evicted"], "every missing number is an eviction: {boot}");
    assert_eq!(boot["lost"]["transit"], 0);
    assert!(missing > 0, "the oldest storm events went");
    // The oldest went: once a storm thread's fork is in the stream, every later thread's is.
    let seen = per_thread(&made, &collected.records);
    let first_kept = made.tids.iter().position(|t| seen.get(t).is_some_and(|s| s.0 > 0)).expect("a thread kept");
    for tid in &made.tids[first_kept..] {
        assert!(seen.get(tid).is_some_and(|s| s.0 > 0 && s.1 > 0), "thread {tid}, newer than an eviction, is missing");
    }
}

#[test]
fn cnlink_killed_mid_segment_resumes_from_its_spool() {
    let Some((_serial, binary, tmp)) = setup("sink_cnlink_killed") else { return };
    let port = cnlink_testnats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let spool = tmp.path().join("spool");
    // First run, no server: the storm's events stay in the active segment; then SIGKILL.
    let first = Shipper::start(&url, &spool, &[]);
    let made_first = Storm::start(3_000, 1_500).finish();
    let last = *made_first.tids.last().unwrap() as i64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spooled(&spool).iter().any(|v| v["event"] == "exit" && v["pid"].as_i64() == Some(last)) {
        assert!(Instant::now() < deadline, "the first storm never reached the spool");
        std::thread::sleep(Duration::from_millis(50));
    }
    let segments =
        std::fs::read_dir(&spool).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "seg"));
    assert_eq!(segments.count(), 1, "killed in the middle of the one segment");
    first.kill();

    // Second run on the same spool, with the server up: what the first left is published first.
    let server = NatsServer::start_on(&binary, &tmp.path().join("store"), port, &[]);
    let second = Shipper::start(&url, &spool, &[]);
    let made_second = Storm::start(3_000, 1_500).finish();
    let (status, said) = second.stop();
    assert_eq!(status, Some(0), "{said:?}");
    assert!(has_line(&said, "records of an earlier run to publish first"), "{said:?}");
    let collected = collect(&server.url());
    assert_eq!(check(&collected, &[&made_first, &made_second]), 0);
}

#[test]
fn three_node_cluster_losing_a_node_loses_nothing() {
    let Some((_serial, binary, tmp)) = setup("sink_cluster") else { return };
    let mut nodes = cnlink_testnats::cluster(&binary, tmp.path());
    let urls = cnlink_testnats::urls(&nodes);
    let shipper = Shipper::start(&urls, &tmp.path().join("spool"), &["--sink-replicas", "3"]);
    // A new cluster elects its JetStream leader first: wait until the stream is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = |said: &[String]| has_line(said, "publishing to") || has_line(said, "publishing again");
    while !ready(&shipper.said()) {
        assert!(Instant::now() < deadline, "the stream never got ready: {:?}", shipper.said());
        std::thread::sleep(Duration::from_millis(50));
    }
    let storm = Storm::start(4_000, 1_000);
    storm.wait_spawned(1_500);
    nodes[0].kill();
    let made = storm.finish();
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    assert!(has_line(&said, " 0 waiting"), "{said:?}");
    let collected = collect(&cnlink_testnats::urls(&nodes[1..]));
    assert_eq!(check(&collected, &[&made]), 0);
}

#[test]
fn a_read_cut_short_by_a_lost_server_still_ends_with_its_audit() {
    let Some((_serial, binary, tmp)) = setup("sink_cut_short") else { return };
    let mut server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let shipper = Shipper::start(&server.url(), &tmp.path().join("spool"), &["--no-enrich"]);
    let made = Storm::start(500, 2_000).finish();
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    // Reading the stream (no --idle-exit: it waits for more), the server goes away.
    let (mut child, out, err) = spawn_collect(&server.url(), &["--retry-for", "1s"]);
    let mut read = Vec::new();
    let final_ledger = wait_line(&out, Duration::from_secs(30), |l| {
        read.push(l.to_owned());
        l.contains("\"type\":\"ledger\"") && l.contains("\"final\":true")
    });
    assert!(final_ledger.is_some(), "the stream was not read to its final ledger: {read:?}");
    server.kill();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let rest: Vec<String> = out.iter().collect();
    let said = err.iter().collect::<Vec<_>>().join("\n");
    assert_eq!(status, Some(2), "{said}");
    let audit: Value = serde_json::from_str(rest.last().expect("an audit line")).unwrap();
    assert_eq!((audit["type"].as_str(), audit["complete"].as_bool()), (Some("audit"), Some(false)), "{audit}");
    assert!(audit["read_error"].as_str().is_some_and(|e| e.contains("collecting from")), "{audit}");
    // What was read before the server went is in it: every event of the one boot, nothing missing.
    let events = read.iter().chain(&rest).filter(|l| l.contains("\"sink_seq\"") && !l.contains("\"type\":")).count();
    assert!(events as u64 >= 2 * made.tids.len() as u64, "{events} events for {} threads", made.tids.len());
    assert_eq!(audit["boots"][0]["events"].as_u64(), Some(events as u64), "{audit}");
    assert_eq!(audit["boots"][0]["missing"], 0, "{audit}");
    assert!(said.contains("INCOMPLETE: the read stopped"), "{said}");
}

#[test]
fn a_malformed_message_in_the_stream_is_counted_by_collect_never_fatal() {
    let Some((_serial, binary, tmp)) = setup("sink_malformed") else { return };
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let shipper = Shipper::start(&server.url(), &tmp.path().join("spool"), &["--no-enrich"]);
    // A foreign publisher puts junk on the stream's subjects (a raw NATS client over TCP).
    let wait = Instant::now() + Duration::from_secs(30);
    while !has_line(&shipper.said(), "publishing to") {
        assert!(Instant::now() < wait, "{:?}", shipper.said());
        std::thread::sleep(Duration::from_millis(20));
    }
    publish_raw(server.port, "cnlink.somehost.proc.exec", b"not json at all");
    let made = Storm::start(500, 1_000).finish();
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    let collected = collect(&server.url());
    assert_eq!(collected.audit["malformed"], 1, "{}", collected.audit);
    assert!(collected.stderr.contains("is malformed"), "{}", collected.stderr);
    assert_eq!(check(&collected, &[&made]), 0);
}

/// Publishes `payload` on `subject` with the NATS text protocol, and waits for the server's answer to a PING
/// (so the message was taken).
fn publish_raw(port: u16, subject: &str, payload: &[u8]) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut msg = format!("CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n", payload.len()).into_bytes();
    msg.extend_from_slice(payload);
    msg.extend_from_slice(b"\r\nPING\r\n");
    tcp.write_all(&msg).unwrap();
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&got).contains("PONG") {
        let n = tcp.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn bad_credentials_and_other_stream_limits_are_said_at_start_and_the_spool_keeps_filling() {
    let Some((_serial, binary, tmp)) = setup("sink_bad_input") else { return };
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &["--auth".into(), "s3cret".into()]);
    let spool = tmp.path().join("spool");
    // A wrong token: said at start; the events wait in the spool (Shipper::start saw a marker there).
    let wrong = Shipper::start(&server.url(), &spool, &["--sink-token", "wrong", "--sink-drain-timeout", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_line(&wrong.said(), "events wait in the spool") {
        assert!(Instant::now() < deadline, "{:?}", wrong.said());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(wrong.said().iter().any(|l| l.to_lowercase().contains("authorization")), "{:?}", wrong.said());
    let made_first = Storm::start(500, 1_000).finish();
    let (status, said_wrong) = wrong.stop();
    assert_eq!(status, Some(0), "{said_wrong:?}");
    assert!(has_line(&said_wrong, "stay in the spool"), "{said_wrong:?}");

    // The right token: it makes the stream (at most a million messages) and publishes everything, the first
    // run's events first.
    let right = Shipper::start(&server.url(), &spool, &["--sink-token", "s3cret", "--sink-max-msgs", "1000000"]);
    let made_second = Storm::start(500, 1_000).finish();
    let (status, said_right) = right.stop();
    assert_eq!(status, Some(0), "{said_right:?}");
    let collected = collect_with(&server.url(), &["--token", "s3cret"]);
    assert_eq!(check(&collected, &[&made_first, &made_second]), 0);

    // A third run with other limits than the stream has: a warning at start, and publishing goes on.
    let third = Shipper::start(&server.url(), &spool, &["--sink-token", "s3cret", "--sink-max-msgs", "5000000"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_line(&third.said(), "kept as it is") {
        assert!(Instant::now() < deadline, "no word about the stream's other limits: {:?}", third.said());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(has_line(&third.said(), "exists with max_msgs"), "{:?}", third.said());
    let (status, said_third) = third.stop();
    assert_eq!(status, Some(0), "{said_third:?}");
    assert!(has_line(&said_third, " 0 waiting"), "{said_third:?}");
}

/// The spool on a tmpfs of 256 KiB while the server is down: writes fail with ENOSPC, which is said and
/// counted, and cnlink goes on; once the server takes the records and frees space, writing resumes.
#[test]
fn a_full_spool_disk_is_said_and_counted_never_a_crash() {
    let Some((_serial, binary, tmp)) = setup("sink_full_disk") else { return };
    let disk = tmp.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    assert!(mounted, "mounting a tmpfs (as root)");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&disk);
    let port = cnlink_testnats::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let shipper = Shipper::start(
        &url,
        &disk.join("spool"),
        &["--sink-spool-segment", "16K", "--sink-spool-max", "8M", "--sink-fsync", "never", "--no-enrich"],
    );
    let made = Storm::start(3_000, 1_500).finish();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_line(&shipper.said(), "records dropped so far") {
        assert!(Instant::now() < deadline, "no word about the full disk: {:?}", shipper.said());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(has_line(&shipper.said(), "No space left on device"), "{:?}", shipper.said());
    let server = NatsServer::start_on(&binary, &tmp.path().join("store"), port, &[]);
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "never a crash: {said:?}");
    let collected = collect(&server.url());
    let missing = check(&collected, &[&made]);
    let ledger = collected.ledger();
    assert!(ledger["write_dropped"].as_u64().unwrap() > 0, "{ledger}");
    assert!(missing > 0, "some of the storm's events could not be written");
}

/// The sink's counters reach `--metrics` (`cnlink_sink_*`) and the service manager's `STATUS=` line.
#[test]
fn metrics_and_status_carry_the_sink() {
    let Some((_serial, binary, tmp)) = setup("sink_metrics") else { return };
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let notify = std::os::unix::net::UnixDatagram::bind(tmp.path().join("notify")).unwrap();
    notify.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let shipper = Shipper::start_with(&server.url(), &tmp.path().join("spool"), &["--metrics", "127.0.0.1:0"], |cmd| {
        cmd.env("NOTIFY_SOCKET", tmp.path().join("notify"));
    });
    let line = wait_line(&shipper.err, Duration::from_secs(20), |l| l.starts_with("cnlink: metrics at http://"));
    let addr = line.expect("the metrics address");
    let addr: std::net::SocketAddr =
        addr.trim_start_matches("cnlink: metrics at http://").trim_end_matches("/metrics").parse().unwrap();
    let made = Storm::start(300, 1_000).finish();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut body, mut status) = (String::new(), String::new());
    while Instant::now() < deadline {
        body = http_get(addr, "/metrics", None).1;
        let mut buf = [0; 4096];
        while let Ok(n) = notify.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if let Some(s) = text.lines().find_map(|l| l.strip_prefix("STATUS=")) {
                status = s.to_owned();
            }
        }
        let acked = metric_sample(&body, "cnlink_sink_acks_total").unwrap_or(0.0);
        if acked >= 600.0 && status.contains("sink up: ") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(metric_sample(&body, "cnlink_sink_acks_total").unwrap_or(0.0) >= 600.0, "{body}");
    assert_eq!(metric_sample(&body, "cnlink_sink_connected"), Some(1.0), "{body}");
    assert!(metric_sample(&body, "cnlink_sink_spool_bytes").unwrap_or(0.0) > 0.0, "{body}");
    assert_eq!(metric_sample(&body, "cnlink_sink_records_lost_total{cause=\"spool_evicted\"}"), Some(0.0), "{body}");
    assert!(status.starts_with("events: ") && status.contains("; sink up: "), "{status}");
    promtool_accepts(&body);
    let (code, said) = shipper.stop();
    assert_eq!(code, Some(0), "{said:?}");
    assert_eq!(check(&collect(&server.url()), &[&made]), 0);
}

// ---- cnlink collect through cnlink proc's writers ----

/// `cnlink collect --audit --idle-exit 1s ARGS`: stdout's lines (the audit last) and stderr.
fn collect_lines(servers: &str, extra: &[&str]) -> (Vec<String>, String) {
    let (out, err, status) = run_collect(servers, extra);
    assert_eq!(status, Some(0), "{err}");
    let audit: Value = serde_json::from_str(out.last().expect("the audit line")).expect("the audit is JSON");
    assert_eq!((audit["type"].as_str(), audit["complete"].as_bool()), (Some("audit"), Some(true)), "{audit}");
    (out, err)
}

#[test]
fn collect_shows_the_fleet_as_cnlink_proc_would_in_text_tree_and_ecs() {
    let Some((_serial, binary, tmp)) = setup("sink_collect_views") else { return };
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let shipper = Shipper::start(&server.url(), &tmp.path().join("spool"), &[]);
    let marker = format!("cnlink-collect-{}", std::process::id());
    let (outer_tag, inner_tag) = (format!("{marker}-outer"), format!("{marker}-inner"));
    // A shell that runs a child shell (exit 7), renames itself to a name with ESC, and exits with 5. The child
    // lives 200 ms, so that its arguments are read however loaded the machine is.
    let script = format!("sh -c 'sleep 0.2; exit 7' {inner_tag}; printf 'e\\033]x' > /proc/$$/comm; exit 5");
    let started = std::time::SystemTime::now();
    let status = Command::new("/bin/sh").args(["-c", &script, &outer_tag]).status().unwrap();
    assert_eq!(status.code(), Some(5));
    let (status, said) = shipper.stop();
    assert_eq!(status, Some(0), "{said:?}");
    let url = server.url();

    // The JSON as published: the children's pids, and the clock offset every event carries.
    let (json, _) = collect_lines(&url, &[]);
    let records: Vec<Value> = json.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let exec_of = |tag: &str| {
        records
            .iter()
            .find(|r| r["event"] == "exec" && r["argv"].as_array().is_some_and(|a| a.iter().any(|x| x == tag)))
            .unwrap_or_else(|| panic!("no exec of {tag}"))
            .clone()
    };
    let (outer, inner) = (exec_of(&outer_tag), exec_of(&inner_tag));
    let (outer_pid, inner_pid) = (outer["pid"].as_i64().unwrap(), inner["pid"].as_i64().unwrap());
    assert!(records.iter().filter(|r| r["event"].is_string()).all(|r| r["realtime_offset_ns"].is_i64()));

    // Text: cnlink proc's lines, the comm escaped; the audit is still the last line, as JSON.
    let (text, err) = collect_lines(&url, &["--format", "text"]);
    assert!(text[0].starts_with("Time ") && text[0].ends_with("Process"), "{text:?}");
    let line = |lines: &[String], kind: &str, pid: i64| {
        lines
            .iter()
            .find(|l| {
                l.split_whitespace().nth(1) == Some(kind) && l.split_whitespace().nth(2) == Some(&pid.to_string())
            })
            .unwrap_or_else(|| panic!("no {kind} of {pid} in {lines:#?}\n{err}"))
            .clone()
    };
    assert!(line(&text, "exec", inner_pid).ends_with(&format!("sh -c sleep 0.2; exit 7 {inner_tag}")), "{text:?}");
    let exit_inner = line(&text, "exit", inner_pid);
    assert_eq!(exit_inner.split_whitespace().nth(3), Some("7"), "{exit_inner}");
    assert_eq!(line(&text, "exit", outer_pid).split_whitespace().nth(3), Some("5"), "{text:?}");
    let comm = line(&text, "comm", outer_pid);
    assert!(comm.contains("-> e\\x1b]x)"), "{comm}");
    assert!(text.iter().all(|l| !l.contains('\x1b')), "nothing unescaped reaches the terminal");
    // The time column: the wall clock when the test ran (this machine's zone), within a few seconds.
    let now = chrono::Local::now();
    let t = chrono::NaiveTime::parse_from_str(exit_inner.split_whitespace().next().unwrap(), "%H:%M:%S").unwrap();
    let drift = (now.time() - t).num_seconds().rem_euclid(86_400);
    assert!(drift < 120, "{exit_inner} at {now}");

    // The tree: the inner shell one level below the outer one.
    let (tree, _) = collect_lines(&url, &["--format", "text", "--tree"]);
    let outer_exec = line(&tree, "exec", outer_pid);
    let inner_exec = line(&tree, "exec", inner_pid);
    let column = |l: &str, what: &str| l.find(what).unwrap_or_else(|| panic!("{what} in {l}"));
    assert!(inner_exec.contains(&format!("└ sh -c sleep 0.2; exit 7 {inner_tag}")), "{tree:#?}");
    // Depth 0 for the outer shell (its parent, this test, never had a line), depth 1 for the inner one.
    assert!(!outer_exec.contains('└'), "{outer_exec}");
    assert_eq!(column(&inner_exec, "└ sh"), column(&outer_exec, "/bin/sh"), "{outer_exec}\n{inner_exec}");
    let fork = line(&tree, "fork", inner_pid);
    assert!(fork.contains("└ /bin/sh -c"), "the child runs its parent's program until it execs: {fork}");

    // `cnlink proc`'s naming flags: -c names processes by their comm.
    let (by_comm, _) = collect_lines(&url, &["--format", "text", "-c"]);
    assert!(line(&by_comm, "exec", inner_pid).ends_with(" sh"), "{by_comm:#?}");
    // They go with the text format only.
    let (_, err, status) = run_collect(&url, &["--format", "json", "-x"]);
    assert_ne!(status, Some(0), "{err}");
    assert!(err.contains("go with --format text"), "{err}");

    // ECS: the process, its arguments, the host, and the time the host saw.
    let (ecs, _) = collect_lines(&url, &["--format", "ecs"]);
    let docs: Vec<Value> = ecs[..ecs.len() - 1].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let doc = docs
        .iter()
        .find(|d| d["event"]["action"] == "exec" && d["process"]["pid"].as_i64() == Some(inner_pid))
        .expect("the inner exec's document");
    assert_eq!(doc["process"]["args"], serde_json::json!(["sh", "-c", "sleep 0.2; exit 7", inner_tag]));
    let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
    assert_eq!(doc["host"]["id"].as_str(), Some(machine_id.trim()));
    let at = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str().unwrap()).unwrap();
    let started: chrono::DateTime<chrono::Utc> = started.into();
    let off = (at.with_timezone(&chrono::Utc) - started).num_milliseconds();
    assert!((-2_000..10_000).contains(&off), "@timestamp {at} vs {started}");
    let exit_doc = docs
        .iter()
        .find(|d| d["event"]["action"] == "exit" && d["process"]["pid"].as_i64() == Some(inner_pid))
        .expect("the inner exit's document");
    assert_eq!(exit_doc["process"]["exit_code"], 7);
    let _ = outer;
}
