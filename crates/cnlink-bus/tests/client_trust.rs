//! The bus clients check who answers: a bus daemon run by another user (uid 65534) on the bus's port, as anyone
//! could while the real daemon is down, is refused by name, and an agent never registers with it, neither at
//! start nor when its re-register loop finds it after the real daemon went away.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cnlink::wire::CbId;
use cnlink_bus::{Bus, BusClient, BusOptions, ClientError};
use common::*;

const NOBODY: u32 = 65534;
const T: Duration = Duration::from_secs(5);

/// A port of our own, per process and test.
fn port(salt: u32) -> u32 {
    0x6200_0000 | ((std::process::id() & 0xffff) << 4) | salt
}

/// A real bus daemon (the `bus_daemon` example) bound to `port` as uid 65534: to a root client, an impostor.
struct Impostor(Child);

impl Impostor {
    fn start(port: u32) -> Impostor {
        let mut cmd = Command::new(example_binary("bus_daemon"));
        cmd.arg(port.to_string()).stdout(Stdio::piped());
        std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
        std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
        let mut child = cmd.spawn().expect("start bus_daemon as uid 65534");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the impostor did not bind port {port:#x}");
        Impostor(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// What the impostor has registered, asked by a client that trusts uid 65534.
    fn registered(&self, port: u32) -> Vec<CbId> {
        let mut c = BusClient::connect(port).unwrap();
        c.set_bus_uids(&[NOBODY]);
        c.list().unwrap().into_iter().map(|e| e.id).filter(|id| *id != CbId::CONNECTOR).collect()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn names_the_impostor(err: &ClientError, impostor: &Impostor) -> bool {
    matches!(
        err,
        ClientError::Connector(cnlink::Error::UntrustedPeer { uid: Some(NOBODY), pid: Some(p), .. }) if *p == impostor.pid()
    )
}

fn root_or_skip() -> bool {
    if !is_root() {
        skip("needs root, to run the impostor as uid 65534");
    }
    is_root()
}

#[test]
fn a_bus_run_by_another_user_is_refused_by_name() {
    if !root_or_skip() {
        return;
    }
    let port = port(1);
    let impostor = Impostor::start(port);
    let mut c = BusClient::connect(port).unwrap();
    let err = c.register(CbId::new(33, 1), "agent").unwrap_err();
    assert!(names_the_impostor(&err, &impostor), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("uid {NOBODY} (pid {})", impostor.pid())), "{text}");
    assert!(c.counters().rejected >= 1);
    // An agent that starts with the impostor in place does not even ask it to register.
    let mut agent = BusClient::connect(port).unwrap();
    let err = agent.serve_echo(&[(CbId::new(33, 2), "agent")], T, |_| true).unwrap_err();
    assert!(names_the_impostor(&err, &impostor), "{err:?}");
    assert_eq!(impostor.registered(port), [CbId::new(33, 1)], "only the REGISTER sent before its answer was seen");
}

#[test]
fn an_agent_does_not_reregister_with_an_impostor_after_the_bus_goes_away() {
    if !root_or_skip() {
        return;
    }
    let port = port(2);
    let id = CbId::new(34, 1);
    let bus = Bus::bind(BusOptions { port, ..BusOptions::default() }).unwrap();
    let real = bus.spawn().unwrap();
    drop(bus);
    let stop = Arc::new(AtomicBool::new(false));
    let rejected = Arc::new(AtomicU64::new(0));
    let agent = std::thread::spawn({
        let (stop, rejected) = (stop.clone(), rejected.clone());
        move || {
            let mut c = BusClient::connect(port).unwrap();
            c.serve_echo(&[(id, "agent")], Duration::from_millis(100), |p| {
                rejected.store(p.counters.rejected, Ordering::Relaxed);
                !stop.load(Ordering::Relaxed)
            })
        }
    });
    let mut c = BusClient::connect(port).unwrap();
    assert!(eventually(T, || c.list().is_ok_and(|l| l.iter().any(|e| e.id == id))), "registered with the real bus");
    assert_eq!(c.request(id, b"real", T).unwrap().data, b"real");
    real.stop().unwrap();

    let impostor = Impostor::start(port);
    // Several re-register checks find the impostor: each is refused.
    assert!(eventually(T, || rejected.load(Ordering::Relaxed) >= 3), "the agent's checks reached the impostor");
    assert!(impostor.registered(port).is_empty(), "the agent registered nothing with the impostor");
    stop.store(true, Ordering::Relaxed);
    let progress = agent.join().unwrap().expect("serve_echo goes on through an impostor");
    assert_eq!(progress.answered, 1);
    assert!(progress.counters.rejected >= 3);
    drop(impostor);
}
