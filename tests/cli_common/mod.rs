//! Helpers shared by the CLI tests: running the binary, the root skip rule, reading JSON lines as they come.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub(crate) fn cnlink() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cnlink"))
}

/// The skip rule: true when the test can run as root; without root it prints why and returns false, except
/// under `CI=true`, where a skip is a failure.
pub(crate) fn root_or_skip(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and skips are failures under CI=true");
    }
    eprintln!("{test}: skipped: needs root");
    false
}

/// A running `cnlink` whose stdout lines arrive on a channel.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) lines: Receiver<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Every line taken from `lines` by [`Running::wait_for`], in order.
    seen: std::cell::RefCell<Vec<String>>,
}

impl Running {
    pub(crate) fn start(args: &[&str]) -> Running {
        let mut child =
            cnlink().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start cnlink");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines, reader: Some(reader), seen: Default::default() }
    }

    /// The next line that satisfies `want`, within `timeout`.
    pub(crate) fn wait_for(&self, timeout: Duration, mut want: impl FnMut(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = want(&l);
                    self.seen.borrow_mut().push(l.clone());
                    if hit {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Spawns marker children until the monitor shows one's fork or exec: proof that events arrive.
    pub(crate) fn wait_ready_json(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let mut marker = Command::new("true").spawn().expect("spawn true");
            let pid = marker.id() as i64;
            marker.wait().unwrap();
            let seen = self.wait_for(Duration::from_millis(500), |l| {
                json(l).is_some_and(|v| {
                    (v["event"] == "fork" && v["child_pid"].as_i64() == Some(pid))
                        || (v["event"] == "exec" && v["pid"].as_i64() == Some(pid))
                })
            });
            if seen.is_some() {
                return;
            }
        }
        panic!("the monitor never showed a marker child's fork or exec");
    }

    pub(crate) fn interrupt(&self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    }

    /// Waits for the exit, with a timeout; returns the exit code, stderr, and every stdout line (those
    /// [`Running::wait_for`] already took included).
    pub(crate) fn finish(mut self, timeout: Duration) -> (Option<i32>, String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cnlink did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        // The reader ends at the end of the child's stdout: join it so that no last line is missed.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the stdout reader thread");
        }
        let mut all = self.seen.take();
        all.extend(self.lines.try_iter());
        (status.code(), err, all)
    }
}

/// A test that fails half-way leaves no process behind.
impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) fn json(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

/// Holds the machine-wide lock around `ns_last_pid` use (the process model's live tests take the same one).
pub(crate) fn ns_last_pid_lock() -> std::fs::File {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/cnlink-ns_last_pid.lock")
        .unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
    f
}

/// Spawns `cmd` as pid `want` (writing `want - 1` to `ns_last_pid` first, under [`ns_last_pid_lock`]); `None`
/// if another process took it.
pub(crate) fn spawn_as(want: i32, cmd: &mut Command) -> Option<Child> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (want - 1).to_string()).unwrap();
    let mut c = cmd.spawn().unwrap();
    if c.id() as i32 == want {
        Some(c)
    } else {
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

/// GET `path` from `addr` over HTTP/1.1; (status line, body).
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

/// The value of the sample `series` (name and labels, exactly as printed) in a Prometheus text body.
pub(crate) fn metric_sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `promtool check metrics` on `body` finds nothing to say (skipped without promtool, a failure under `CI=true`).
pub(crate) fn promtool_accepts(body: &str) {
    use std::io::Write;
    let Ok(mut p) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "promtool is missing (Debian's prometheus package)");
        eprintln!("promtool_accepts: skipped: promtool is not installed");
        return;
    };
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}\non:\n{body}");
}
