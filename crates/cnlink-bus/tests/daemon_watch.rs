//! How the daemon notices dead clients when the pid in their credentials does not name them: the pid in a
//! netlink datagram's `SCM_CREDENTIALS` is the sender's pid as its own pid namespace numbers it, so for a client
//! in another pid namespace (a container sharing the host's network namespace, or the daemon in a container of
//! its own) it names another process of the daemon's namespace, or none. The daemon watches a pid only once
//! `/proc` shows that process holding the client's socket; any other client keeps its registrations and loses
//! them at the first send that finds its socket closed (`ECONNREFUSED`), or when the daemon's periodic check of
//! `/proc/net/netlink` finds its socket gone. A socket that outlives the process that registered (after a `fork`)
//! keeps its registrations too.
//!
//! The pid-namespace tests run the daemon (the `bus_daemon` example) or the agent (`echo_agent`) under
//! `unshare --pid --fork` and need root and util-linux.

mod common;

use std::io::{BufRead, BufReader, Lines};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

use cnlink::socket::{Protocol, Socket};
use cnlink::wire::CbId;
use cnlink_bus::{BusClient, BusOptions, Config, Policy};
use common::*;

const T: Duration = Duration::from_secs(5);

fn stat(c: &mut BusClient, name: &str) -> u64 {
    c.stats().unwrap().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no counter {name}")).1
}

fn listed(c: &mut BusClient, id: CbId) -> bool {
    c.list().unwrap().iter().any(|e| e.id == id)
}

/// Runs `args` in a new pid namespace (killed with the returned `Agent`), with its stdout's lines.
fn in_new_pid_namespace(args: &[&str]) -> (Agent, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (Agent { child, port: 0 }, lines)
}

/// The first line that starts with `prefix`, without it.
fn line_after(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    lines
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
}

/// Whether the pid-namespace tests can run: root, and `unshare` present.
fn can_unshare() -> bool {
    if !is_root() {
        skip("needs root (to create pid namespaces)");
        return false;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        skip("needs util-linux's unshare");
        return false;
    }
    true
}

/// A daemon and an agent for `id`, each in a pid namespace of its own (siblings); the agent's port; a client of
/// the daemon.
fn daemon_and_agent(salt: u32, id: CbId) -> (Agent, Agent, u32, BusClient) {
    let port = 0x636E_0000 | (std::process::id() & 0xffff) ^ salt;
    let daemon = example_binary("bus_daemon");
    let (daemon, mut out) = in_new_pid_namespace(&[daemon.to_str().unwrap(), &port.to_string()]);
    line_after(&mut out, "ready");
    let agent = agent_binary();
    let (agent, mut out) = in_new_pid_namespace(&[agent.to_str().unwrap(), &port.to_string(), &id.to_string()]);
    let agent_port = line_after(&mut out, "ready ").parse().unwrap();
    let mut c = BusClient::connect(port).unwrap();
    c.wait_for_bus(T).unwrap();
    (daemon, agent, agent_port, c)
}

#[test]
fn a_client_in_another_pid_namespace_stays_registered() {
    if !can_unshare() {
        return;
    }
    let id = CbId::new(0x4e5, 1);
    let (_daemon, _agent, _, mut c) = daemon_and_agent(0x7e57, id);
    assert!(listed(&mut c, id), "the agent's id is listed after its REGISTER was answered");
    for i in 0..3u8 {
        assert_eq!(c.request(id, &[i; 4], T).unwrap().data, [i; 4], "the agent answers");
    }
    assert!(eventually(T, || stat(&mut c, "unwatched") == 1), "its pid names no process holding its socket");
    assert!(listed(&mut c, id), "still registered once found unwatchable");
    assert_eq!((stat(&mut c, "watched"), stat(&mut c, "clients_gone")), (0, 0));
}

#[test]
fn a_client_in_another_pid_namespace_is_cleaned_up_at_the_first_send_after_it_dies() {
    if !can_unshare() {
        return;
    }
    let id = CbId::new(0x4e5, 2);
    let (_daemon, agent, agent_port, mut c) = daemon_and_agent(0x7e58, id);
    assert!(listed(&mut c, id));
    kill_and_wait_for_its_socket(agent, agent_port);
    // Not watched: the message forwarded to the closed socket fails with ECONNREFUSED, which cleans up. The bus
    // answers a batch of datagrams after handling all of them, and sends in order: once a request sent after the
    // message is answered, the forward has failed, and the next request sees the result.
    c.send(id, b"anyone?").unwrap();
    c.stats().unwrap();
    assert!(!listed(&mut c, id), "the dead agent's id is still registered");
    assert_eq!(stat(&mut c, "clients_gone"), 1);
}

#[test]
fn a_dead_unwatched_client_is_cleaned_up_without_traffic_and_its_port_is_not_inherited() {
    if !can_unshare() {
        return;
    }
    let id = CbId::new(0x4e5, 5);
    let (_daemon, agent, agent_port, mut c) = daemon_and_agent(0x7e59, id);
    assert!(listed(&mut c, id));
    assert!(eventually(T, || stat(&mut c, "unwatched") == 1), "the bus found it cannot watch the agent");
    kill_and_wait_for_its_socket(agent, agent_port);
    // Someone binds the dead agent's port at once: the bus, checking the sockets of the clients it cannot watch,
    // sees another socket there and drops the dead agent's ids instead of forwarding their requests to it.
    let thief = Socket::open_at(Protocol::Usersock, agent_port).unwrap();
    assert!(eventually(T, || !listed(&mut c, id)), "the dead agent's id is still registered");
    assert_eq!(stat(&mut c, "clients_gone"), 1);
    drop(thief);
}

/// Kills an agent started by `in_new_pid_namespace`, and waits until its socket is closed.
fn kill_and_wait_for_its_socket(mut agent: Agent, port: u32) {
    // `unshare --kill-child` takes the agent (pid 1 of its namespace) with it.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let bound = || {
        std::fs::read_to_string("/proc/net/netlink").unwrap().lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&"2") && cols.get(2) == Some(&port.to_string().as_str())
        })
    };
    assert!(eventually(T, || !bound()), "the agent's socket is still bound");
}

/// The agent's pid in its namespace is made equal to the pid of an unrelated process of ours (through
/// `ns_last_pid`): its credentials name that process. The daemon must not watch it, or the agent's ids would go
/// when that process exits.
#[test]
fn credentials_naming_an_unrelated_process_do_not_end_a_live_client() {
    if !can_unshare() {
        return;
    }
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let mut unrelated = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = unrelated.id();
    let id = CbId::new(0x4e5, 3);
    let script = format!(
        "echo {} > /proc/sys/kernel/ns_last_pid && {{ {} {port} {id} & echo \"pid $!\"; wait; }}",
        pid - 1,
        agent_binary().display()
    );
    let (_agent, mut out) = in_new_pid_namespace(&["sh", "-c", &script]);
    assert_eq!(line_after(&mut out, "pid "), pid.to_string(), "the agent's pid in its namespace");
    line_after(&mut out, "ready ");
    let mut c = BusClient::connect(port).unwrap();
    assert!(listed(&mut c, id));
    assert!(eventually(T, || h.bus().stats().unwatched == 1), "{:?}", h.bus().stats());
    unrelated.kill().unwrap();
    unrelated.wait().unwrap();
    // The agent lives on: its id stays, and it answers.
    for i in 0..10u8 {
        assert!(listed(&mut c, id), "gone with the unrelated process ({i})");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(c.request(id, b"still there?", T).unwrap().data, b"still there?");
    assert_eq!(h.bus().stats().clients_gone, 0);
}

/// The child of `a_socket_that_outlives_its_registering_process_keeps_its_ids`: registers `id` on the bus at
/// `port`, hands its socket to a `sleep` (inherited over exec), prints the sleep's pid, and exits when its stdin
/// closes.
#[allow(clippy::zombie_processes)] // The sleep outlives this process on purpose: it holds the socket.
fn register_and_fork(port: u32, id: CbId) {
    let mut c = BusClient::connect(port).unwrap();
    c.register(id, "forked").unwrap();
    rustix::io::fcntl_setfd(c.connector().socket(), rustix::io::FdFlags::empty()).unwrap();
    let sleep = Command::new("sleep").arg("60").stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
    println!("\nready {}", sleep.id());
    let _ = std::io::stdin().read_line(&mut String::new());
}

#[test]
fn a_socket_that_outlives_its_registering_process_keeps_its_ids() {
    let id = CbId::new(0x4e5, 4);
    if let Ok(port) = std::env::var("CNLINK_BUS_FORK_PORT") {
        return register_and_fork(port.parse().unwrap(), id);
    }
    let h = start_bus(BusOptions {
        config: Config { policy: Policy::open(), ..Config::default() },
        ..BusOptions::default()
    });
    let port = h.bus().port();
    let mut registrar = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_socket_that_outlives_its_registering_process_keeps_its_ids", "--nocapture"])
        .env("CNLINK_BUS_FORK_PORT", port.to_string())
        .env_remove("CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(registrar.stdout.take().unwrap()).lines();
    let holder = out.by_ref().map_while(Result::ok).find_map(|l| l.strip_prefix("ready ").and_then(|p| p.parse().ok()));
    let holder = KillOnDrop(rustix::process::Pid::from_raw(holder.expect("ready PID")).unwrap());
    // The bus watches the registering process (it holds the socket); then that process exits while the sleep
    // holds its socket: the bus finds the socket alive and keeps the client.
    assert!(eventually(T, || h.bus().stats().watched == 1), "{:?}", h.bus().stats());
    drop(registrar.stdin.take());
    assert!(registrar.wait().unwrap().success());
    assert!(eventually(T, || h.bus().stats().unwatched == 1), "{:?}", h.bus().stats());
    let mut c = BusClient::connect(port).unwrap();
    assert!(listed(&mut c, id));
    assert_eq!(h.bus().stats().clients_gone, 0);
    // When the last holder goes, so does the socket, and the first send to it cleans up.
    drop(holder);
    assert!(eventually(T, || {
        let _ = c.send(id, b"anyone?");
        !listed(&mut c, id)
    }));
}

/// Kills a process that is not our child (so not ours to wait for) when dropped.
struct KillOnDrop(rustix::process::Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::KILL);
    }
}
