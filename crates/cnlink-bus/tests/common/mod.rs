//! Helpers shared by the bus's socket tests.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cnlink::wire::CbId;
use cnlink_bus::{Bus, BusHandle, BusOptions};

/// Reports a skipped test; under `CI=true` a skip is a failure.
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("test needs what CI must provide: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Whether we run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A bus on a kernel-assigned port, running on its own thread.
pub fn start_bus(opts: BusOptions) -> BusHandle {
    Bus::bind(BusOptions { port: 0, ..opts }).unwrap().spawn().unwrap()
}

/// Polls `f` every 10 ms until it is true or `timeout` passes; returns whether it became true.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The `echo_agent` example binary, built on demand.
pub fn agent_binary() -> PathBuf {
    example_binary("echo_agent")
}

/// One of this crate's example binaries. `cargo test` builds the examples beside the test binaries; when they are
/// not there (one test target was asked for), the example is built into the test's own scratch target directory,
/// so that the outer cargo's build-directory lock is never waited on and the outer build's features are not
/// changed.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let built = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    if built.exists() {
        return built;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("examples-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "-q", "-p", "cnlink-bus", "--example", name])
        .env("CARGO_TARGET_DIR", &dir)
        .status();
    assert!(st.is_ok_and(|s| s.success()), "could not build the {name} example");
    dir.join("debug/examples").join(name)
}

/// A running agent process and its port.
pub struct Agent {
    pub child: Child,
    pub port: u32,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `echo_agent` for `ids` on the bus at `bus_port`, as `uid` when given; waits for it to be ready.
pub fn spawn_agent(bus_port: u32, ids: &[CbId], uid: Option<u32>) -> Result<Agent, String> {
    let mut cmd = Command::new(agent_binary());
    cmd.arg(bus_port.to_string()).args(ids.iter().map(|i| i.to_string())).stdout(Stdio::piped());
    if let Some(uid) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, uid);
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).map_err(|e| e.to_string())?;
    match line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()) {
        Some(port) => Ok(Agent { child, port }),
        None => {
            let status = child.wait().map_err(|e| e.to_string())?;
            Err(format!("agent did not start ({status}): {line:?}"))
        }
    }
}
