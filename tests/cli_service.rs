//! `cnlink proc` and `cnlink bus` as services: systemd's readiness protocol through a fake `NOTIFY_SOCKET`, the
//! metrics endpoint scraped over 127.0.0.1 and checked by `promtool`, and the bad inputs (a socket that points
//! nowhere, a port already taken, a malformed config file).

mod cli_common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use cli_common::{cnlink, http_get, json, metric_sample, promtool_accepts, root_or_skip};

/// A port id of our own for the bus tests.
fn bus_port(salt: u32) -> u32 {
    0x6400_0000 | ((std::process::id() & 0xfff) << 8) | salt
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("cnlink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The service manager's end of `NOTIFY_SOCKET`: a datagram socket the test binds.
struct FakeSystemd {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl FakeSystemd {
    fn new(name: &str) -> FakeSystemd {
        let dir = TempDir::new(name);
        let path = dir.0.join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        FakeSystemd { sock, path, _dir: dir }
    }

    /// The next notification, within `timeout`.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Notifications until one contains `want`; all of them, in order, or a panic after `timeout`.
    fn until(&self, want: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(m) = self.recv(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))
        {
            let done = m.lines().any(|l| l == want || l.starts_with(want));
            seen.push(m);
            if done {
                return seen;
            }
        }
        panic!("no {want:?} within {timeout:?}; saw {seen:?}");
    }
}

/// A daemon with stdout and stderr lines on channels; killed on drop if still running.
struct Daemon {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

impl Daemon {
    fn spawn(mut cmd: Command) -> Daemon {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start cnlink");
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Daemon { child, out, err }
    }

    /// The first line on `rx` that `want` accepts, within `timeout`.
    fn wait(rx: &Receiver<String>, timeout: Duration, mut want: impl FnMut(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) if want(&l) => return Some(l),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The metrics address the daemon printed (it was given port 0).
    fn metrics_addr(&self) -> SocketAddr {
        let l = Daemon::wait(&self.err, Duration::from_secs(20), |l| l.starts_with("cnlink: metrics at http://"))
            .expect("the daemon never said where its metrics are");
        l.trim_start_matches("cnlink: metrics at http://").trim_end_matches("/metrics").parse().unwrap()
    }

    /// SIGTERM, then the exit code within 10 s.
    fn terminate(mut self) -> Option<i32> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "cnlink did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cnlink ARGS` with the fake service manager's socket and a watchdog of `watchdog_usec`, under a shell that
/// sets `WATCHDOG_PID` to its own pid before it execs (so that it is the daemon's pid, as systemd sets it).
fn under_systemd(fake: &FakeSystemd, watchdog_usec: u64, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"").arg(env!("CARGO_BIN_EXE_cnlink")).args(args);
    cmd.env("NOTIFY_SOCKET", &fake.path).env("WATCHDOG_USEC", watchdog_usec.to_string());
    cmd
}

#[test]
fn proc_is_ready_only_once_subscribed_then_pings_the_watchdog() {
    if !root_or_skip("proc_is_ready_only_once_subscribed_then_pings_the_watchdog") {
        return;
    }
    let fake = FakeSystemd::new("notify-proc");
    let d = Daemon::spawn(under_systemd(&fake, 1_000_000, &["proc", "--format", "json", "-e", "exec", "--no-enrich"]));
    let first = fake.recv(Duration::from_secs(20)).expect("no notification at all");
    assert_eq!(first, "READY=1\n", "READY=1 is the first thing the monitor says");
    // READY came after the kernel's ack: a process started now is seen.
    let mut marker = Command::new("/bin/true").spawn().unwrap();
    let pid = marker.id() as i64;
    marker.wait().unwrap();
    let seen = Daemon::wait(&d.out, Duration::from_secs(10), |l| {
        json(l).is_some_and(|v| v["event"] == "exec" && v["pid"].as_i64() == Some(pid))
    });
    assert!(seen.is_some(), "the exec of a process started right after READY=1 was not shown");
    // Half the watchdog interval is 0.5 s; the main loop wakes at least every 200 ms.
    fake.until("WATCHDOG=1", Duration::from_secs(5));
    fake.until("WATCHDOG=1", Duration::from_secs(5));
    let status = fake.until("STATUS=", Duration::from_secs(5));
    let status = status.last().unwrap();
    assert!(status.starts_with("STATUS=events: ") && status.contains(" received, "), "{status}");
    assert_eq!(d.terminate(), Some(0));
    fake.until("STOPPING=1", Duration::from_secs(5));
}

#[test]
fn bus_is_ready_once_bound() {
    let fake = FakeSystemd::new("notify-bus");
    let port = bus_port(1).to_string();
    let d = Daemon::spawn(under_systemd(&fake, 2_000_000, &["bus", "--port", &port]));
    let first = fake.recv(Duration::from_secs(20)).expect("no notification at all");
    assert_eq!(first, "READY=1\n");
    // At READY=1 the socket is bound and served: a client gets an answer at once.
    let out = cnlink().args(["bus", "stats", "--port", &port]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    fake.until("WATCHDOG=1", Duration::from_secs(5));
    let status = fake.until("STATUS=", Duration::from_secs(5));
    assert!(status.last().unwrap().contains(" ids, "), "{status:?}");
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_notify_socket_that_points_nowhere_is_reported_once_and_ignored() {
    let dir = TempDir::new("notify-nowhere");
    let port = bus_port(2).to_string();
    let mut cmd = cnlink();
    cmd.args(["bus", "--port", &port]).env("NOTIFY_SOCKET", dir.0.join("missing")).env("WATCHDOG_USEC", "200000");
    let d = Daemon::spawn(cmd);
    let warned = Daemon::wait(&d.err, Duration::from_secs(20), |l| l.contains("NOTIFY_SOCKET="));
    let warned = warned.expect("no word about the unreachable NOTIFY_SOCKET");
    assert!(warned.contains("not notifying the service manager"), "{warned}");
    // The daemon works on.
    let out = cnlink().args(["bus", "stats", "--port", &port]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        Daemon::wait(&d.err, Duration::from_millis(1500), |l| l.contains("NOTIFY_SOCKET=")).is_none(),
        "the warning is given once"
    );
    assert_eq!(d.terminate(), Some(0));
}

/// Scrapes until `want` accepts the body (the daemons refresh their metrics every second).
fn scrape_until(addr: SocketAddr, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(addr, "/metrics", None);
        assert_eq!(status, "HTTP/1.1 200 OK");
        if want(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "the metrics never showed what was expected:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bus_metrics_pass_promtool() {
    let port = bus_port(3).to_string();
    let mut cmd = cnlink();
    cmd.args(["bus", "--port", &port, "--metrics", "127.0.0.1:0"]);
    let d = Daemon::spawn(cmd);
    let addr = d.metrics_addr();
    for _ in 0..3 {
        assert!(cnlink().args(["bus", "stats", "--port", &port]).output().unwrap().status.success());
    }
    let body = scrape_until(addr, |b| metric_sample(b, "cnlink_bus_control_total").is_some_and(|v| v >= 3.0));
    assert!(metric_sample(&body, "cnlink_bus_received_total").unwrap() >= 3.0, "{body}");
    assert!(
        metric_sample(&body, "cnlink_bus_clients").is_some() && metric_sample(&body, "cnlink_bus_users").is_some(),
        "{body}"
    );
    assert!(body.contains("cnlink_build_info{version=\""), "{body}");
    promtool_accepts(&body);
    let (_, om) = http_get(addr, "/metrics", Some("application/openmetrics-text;version=1.0.0"));
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE cnlink_bus_received counter"), "{om}");
    let (status, _) = http_get(addr, "/", None);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn proc_metrics_pass_promtool() {
    if !root_or_skip("proc_metrics_pass_promtool") {
        return;
    }
    let mut cmd = cnlink();
    cmd.args(["proc", "--quiet", "--metrics", "127.0.0.1:0"]);
    let d = Daemon::spawn(cmd);
    let addr = d.metrics_addr();
    let execs = |b: &str| metric_sample(b, "cnlink_proc_events_received_total{kind=\"exec\"}").unwrap_or(0.0);
    // Start processes until the monitor has counted some (it subscribes after the endpoint is up).
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        Command::new("/bin/true").status().unwrap();
        let (_, body) = http_get(addr, "/metrics", None);
        if execs(&body) >= 1.0 {
            break body;
        }
        assert!(Instant::now() < deadline, "no exec counted:\n{body}");
        std::thread::sleep(Duration::from_millis(300));
    };
    for series in [
        "cnlink_proc_events_lost_total{cause=\"seq_gap\"}",
        "cnlink_proc_events_lost_total{cause=\"queue\"}",
        "cnlink_proc_overruns_total",
        "cnlink_proc_queue_depth",
        "cnlink_proc_process_table_size",
        "cnlink_proc_events_shown_total{kind=\"fork\"}",
    ] {
        assert!(metric_sample(&body, series).is_some(), "{series} missing:\n{body}");
    }
    // Bounded labels only: kinds, causes, CPUs and the version.
    for l in body.lines().filter(|l| !l.starts_with('#')) {
        if let Some(labels) = l.split_once('{').map(|(_, r)| r) {
            let key = labels.split('=').next().unwrap();
            assert!(["kind", "cause", "cpu", "version"].contains(&key), "unexpected label in {l}");
        }
    }
    promtool_accepts(&body);
    assert_eq!(d.terminate(), Some(0));
}

#[test]
fn a_metrics_port_already_taken_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let port = bus_port(4).to_string();
    let out = cnlink().args(["bus", "--port", &port, "--metrics", &addr]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("--metrics: cannot listen on {addr}")) && err.contains("in use"), "{err}");
}

#[test]
fn a_malformed_config_file_is_an_error_naming_file_line_and_key() {
    let dir = TempDir::new("config-bad");
    let file = dir.0.join("cnlink.toml");
    std::fs::write(&file, "[bus]\nport = 1\nqueue = \"many\"\n").unwrap();
    let out = cnlink().args(["bus", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with(&format!("cnlink: {}:3:1: bus.queue: invalid value 'many'", file.display())), "{err}");
}
