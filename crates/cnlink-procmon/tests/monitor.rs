//! The monitor against the live kernel: the builder (blocking and async), the examples, and a recording that
//! replays to the same records.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnlink::wire::EventData;
use cnlink_procmon::{
    recorder, HostIdentity, Monitor, MonitorItem, ProcAnswer, ProcRecord, RecordedProc, RecorderEvent, ReplayEvents,
    ReplayInput, Selection,
};
use common::live_kernel;

const WAIT: Duration = Duration::from_secs(15);

/// The arguments of a record's process, lossily.
fn argv(r: &ProcRecord) -> Vec<String> {
    r.process
        .as_ref()
        .and_then(|p| p.program.argv.as_ref())
        .map_or(Vec::new(), |a| a.args().map(|x| String::from_utf8_lossy(x).into_owned()).collect())
}

fn is_exec_of(r: &ProcRecord, pid: i32) -> bool {
    matches!(r.event.data, EventData::Exec { process_tgid, .. } if process_tgid == pid)
}

fn is_exit_of(r: &ProcRecord, pid: i32) -> bool {
    matches!(r.event.data, EventData::Exit { process_pid, process_tgid, .. } if process_pid == pid && process_tgid == pid)
}

/// Receives from `m` until `done` holds for a record (at most [`WAIT`]); returns every item received.
fn until(m: &mut Monitor, mut done: impl FnMut(&ProcRecord) -> bool) -> Vec<MonitorItem> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    while Instant::now() < deadline {
        let from = all.len();
        m.recv(&mut all, Some(Duration::from_millis(100))).expect("receive");
        if all[from..].iter().any(|i| matches!(i, MonitorItem::Record(r) if done(r))) {
            return all;
        }
    }
    panic!("not seen within {WAIT:?}");
}

#[test]
fn the_blocking_monitor_names_execs_with_ids_and_ancestry() {
    if !live_kernel("the_blocking_monitor_names_execs_with_ids_and_ancestry") {
        return;
    }
    let mut m = Monitor::builder().events(Selection::parse("exec,exit").unwrap()).ancestry_depth(4).build().unwrap();
    let mut c = Command::new("sh").args(["-c", "sleep 0.2", "cnlink-procmon-blocking"]).spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    let mut items = until(&mut m, |r| is_exit_of(r, pid));
    m.stop();
    while !m.is_finished() {
        m.recv(&mut items, Some(Duration::ZERO)).unwrap();
    }
    let recs: Vec<&ProcRecord> = items
        .iter()
        .filter_map(|i| match i {
            MonitorItem::Record(r) => Some(r),
            MonitorItem::Lost(_) => None,
        })
        .collect();
    assert!(recs.iter().all(|r| matches!(r.event.data, EventData::Exec { .. } | EventData::Exit { .. })));
    let exec = recs.iter().find(|r| is_exec_of(r, pid)).expect("the exec");
    let exit = recs.iter().find(|r| is_exit_of(r, pid)).unwrap();
    assert_eq!(argv(exec), ["sh", "-c", "sleep 0.2", "cnlink-procmon-blocking"]);
    assert_eq!(exec.entity_id, exit.entity_id);
    assert_eq!(exec.ancestors[0].pid, std::process::id() as i32);
    assert!(exec.ancestors.len() <= 4);
    let c = m.counters();
    assert!(c.prefetch.read + c.prefetch.stale + c.prefetch.over_budget >= 1, "the receive thread saw the exec: {c:?}");
    assert!(c.received[cnlink_procmon::EventKind::Fork.index()] >= 1, "the table is fed forks it does not show");
    assert_eq!(c.losses.total(), 0);
}

#[cfg(feature = "tokio")]
#[test]
fn the_monitor_is_a_stream_on_tokio() {
    if !live_kernel("the_monitor_is_a_stream_on_tokio") {
        return;
    }
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        use std::pin::Pin;

        use futures_core::Stream;

        let mut m = Monitor::builder().events(Selection::parse("exec").unwrap()).build().unwrap();
        let mut c = Command::new("sh").args(["-c", "sleep 0.2", "cnlink-procmon-tokio"]).spawn().unwrap();
        let pid = c.id() as i32;
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let item = std::future::poll_fn(|cx| Pin::new(&mut m).poll_next(cx)).await;
                if let Some(Ok(MonitorItem::Record(r))) = item {
                    if is_exec_of(&r, pid) {
                        return r;
                    }
                }
            }
        })
        .await
        .expect("the exec, through the stream");
        c.wait().unwrap();
        assert_eq!(argv(&found), ["sh", "-c", "sleep 0.2", "cnlink-procmon-tokio"]);
        // Batches through the async call, too.
        let mut items = Vec::new();
        let mut c = Command::new("true").spawn().unwrap();
        let n = tokio::time::timeout(WAIT, m.recv_async(&mut items)).await.unwrap().unwrap();
        c.wait().unwrap();
        assert_eq!(n, items.len());
        assert!(n > 0);
    });
}

/// The example's binary, built with the features it needs when it is not beside the tests.
fn example(name: &str, features: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    if built.exists() {
        return built;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "cnlink-procmon", "--example", name]).env("CARGO_TARGET_DIR", &dir);
    for f in features {
        cmd.args(["--features", f]);
    }
    assert!(cmd.status().unwrap().success(), "could not build the {name} example");
    dir.join("debug/examples").join(name)
}

/// Runs an example for 2 seconds; once it is ready, starts a marked process; returns its output.
fn run_example(name: &str, features: &[&str], marker: &str) -> (String, u32) {
    let mut ex = Command::new(example(name, features)).arg("2").stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(ex.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first.trim(), "ready");
    let mut c = Command::new("sh").args(["-c", "sleep 0.3", marker]).spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(ex.wait().unwrap().success());
    (rest, pid)
}

#[test]
fn the_examples_run() {
    if !live_kernel("the_examples_run") {
        return;
    }
    let (text, pid) = run_example("monitor", &[], "cnlink-example-blocking");
    let exec = text.lines().find(|l| l.starts_with(&format!("exec {pid} "))).unwrap_or_else(|| panic!("{text}"));
    assert!(exec.contains("cnlink-example-blocking"), "{exec}");
    assert!(text.lines().any(|l| l.starts_with(&format!("exit {pid} "))), "{text}");
    assert!(text.lines().last().is_some_and(|l| l.starts_with("done: ")), "{text}");
    let (text, pid) = run_example("monitor_tokio", &["tokio"], "cnlink-example-tokio");
    assert!(text.lines().any(|l| l.starts_with(&format!("exec {pid} "))), "{text}");
    assert!(text.lines().last().is_some_and(|l| l.starts_with("done: ")), "{text}");
}

#[test]
fn a_recording_replays_to_the_same_records() {
    if !live_kernel("a_recording_replays_to_the_same_records") {
        return;
    }
    let host = HostIdentity::read().unwrap();
    let selection = Selection::ALL;
    let (handle, rec) = recorder(1 << 21);
    let mut live = Monitor::builder().events(selection).recorder(handle).build().unwrap();
    let mut c = Command::new("sh").args(["-c", "sleep 0.1; /bin/true x; exit 3", "cnlink-replay"]).spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    let mut items = until(&mut live, |r| is_exit_of(r, pid));
    live.stop();
    while !live.is_finished() {
        live.recv(&mut items, Some(Duration::ZERO)).unwrap();
    }
    let (mask, filtered) = (live.kernel_mask(), live.kernel_filtered());
    assert_eq!(live.counters().recorder_missed, 0);
    drop(live);

    // The recording: what the receive thread saw, and what /proc answered the table.
    let mut inputs = Vec::new();
    let mut answers = Vec::new();
    let mut datagrams = 0;
    for ev in rec {
        match ev {
            RecorderEvent::Answer(a) => answers.push(a),
            RecorderEvent::Missed { count } => panic!("the recorder missed {count}"),
            other => {
                datagrams += usize::from(matches!(other, RecorderEvent::Datagram { .. }));
                inputs.extend(ReplayInput::from_recorded(&other));
            }
        }
    }
    assert!(matches!(answers.first(), Some(ProcAnswer::Snapshot { .. })), "the snapshot comes first");
    assert!(answers.iter().any(|a| matches!(a, ProcAnswer::Observe { pid: p, .. } if *p == pid)));
    assert!(datagrams > 0);
    let source = RecordedProc::new(answers);
    let mismatches = source.mismatches();
    let replay = Monitor::builder()
        .events(selection)
        .source(ReplayEvents::new(inputs, mask, filtered))
        .proc_source(source)
        .host(host)
        .own_pid(Some(std::process::id() as i32))
        .build()
        .unwrap();
    let replayed: Vec<MonitorItem> = replay.map(Result::unwrap).collect();
    assert_eq!(mismatches.load(std::sync::atomic::Ordering::Relaxed), 0, "the replay asked what the recording holds");
    let text = |v: &[MonitorItem]| v.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>();
    let (live_text, replay_text) = (text(&items), text(&replayed));
    assert_eq!(live_text.len(), replay_text.len());
    for (a, b) in live_text.iter().zip(&replay_text) {
        assert_eq!(a, b);
    }
    assert!(items.iter().any(
        |i| matches!(i, MonitorItem::Record(r) if is_exec_of(r, pid) && argv(r).contains(&"cnlink-replay".to_string()))
    ));
}
