//! The parties of a run, each played by this binary re-executed with a hidden subcommand: the raw echo (the
//! floor), the daemon (with an in-process echo callback), the remote agent and the group subscriber.
//!
//! Every role prints `ready ...` on stdout once it is set up, asks for SIGKILL when the harness dies
//! (`PR_SET_PDEATHSIG`), and otherwise runs until the harness kills it (the subscriber ends by itself once its
//! stdin is closed and its socket is drained, and prints what it counted as one JSON line).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cnlink::socket::{Protocol, Socket};
use cnlink::wire::CbId;
use cnlink::ClientItem;
use cnlink_bus::core::Limits;
use cnlink_bus::{Bus, BusClient, BusOptions, Config, Policy};

use super::mono_ns;

/// The environment variable carrying the harness's pid to its children.
pub(crate) const PARENT_ENV: &str = "CNLINK_BUS_BENCH_PARENT";

/// A role this binary plays as a child of the harness.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum Role {
    /// Echoes every datagram on a `NETLINK_USERSOCK` socket at PORT back to its sender with `ack + 1`.
    #[command(name = "__raw-echo", hide = true)]
    RawEcho {
        /// Port id to bind.
        #[arg(long)]
        port: u32,
    },
    /// Runs the bus daemon at PORT, optionally with echo callbacks inside it: on a worker thread for
    /// IDX.VAL, on the receive thread (inline) for IDX.VAL+1.
    #[command(name = "__daemon", hide = true)]
    Daemon {
        /// Port id to bind.
        #[arg(long)]
        port: u32,
        /// Register in-daemon echo callbacks for this idx (with `--echo-val`: worker; `--echo-val` + 1: inline).
        #[arg(long)]
        echo_idx: Option<u32>,
        /// The val of the worker echo callback's id (the inline one's is one more).
        #[arg(long, default_value_t = 1)]
        echo_val: u32,
    },
    /// Registers IDX.VAL with the bus at BUS and answers every message with `serve_echo`.
    #[command(name = "__agent", hide = true)]
    Agent {
        /// The bus's port id.
        #[arg(long)]
        bus: u32,
        /// The id's idx.
        #[arg(long)]
        idx: u32,
        /// The id's val.
        #[arg(long)]
        val: u32,
        /// Answer with a raw loop on the client's socket (blocking `recv`, `send_to`) instead of `serve_echo`.
        #[arg(long)]
        raw: bool,
    },
    /// Joins GROUP on the bus at BUS and counts the messages for IDX.VAL until stdin closes.
    #[command(name = "__subscriber", hide = true)]
    Subscriber {
        /// The bus's port id.
        #[arg(long)]
        bus: u32,
        /// The group to join.
        #[arg(long)]
        group: u32,
        /// The counted id's idx.
        #[arg(long)]
        idx: u32,
        /// The counted id's val.
        #[arg(long)]
        val: u32,
        /// Receive buffer to ask for (0: the system default).
        #[arg(long, default_value_t = 0)]
        rcvbuf: usize,
    },
}

impl Role {
    /// Plays the role.
    pub(crate) fn run(self) -> Result<()> {
        die_with_parent()?;
        match self {
            Role::RawEcho { port } => raw_echo(port),
            Role::Daemon { port, echo_idx, echo_val } => daemon(port, echo_idx.map(|i| CbId::new(i, echo_val))),
            Role::Agent { bus, idx, val, raw } => agent(bus, CbId::new(idx, val), raw),
            Role::Subscriber { bus, group, idx, val, rcvbuf } => subscriber(bus, group, CbId::new(idx, val), rcvbuf),
        }
    }
}

/// Asks for SIGKILL when the harness exits, and exits now if it already has.
fn die_with_parent() -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let expected = std::env::var(PARENT_ENV).ok().and_then(|p| p.parse::<i32>().ok());
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if expected.is_some() && parent != expected {
        bail!("the harness is gone");
    }
    Ok(())
}

/// The floor: one blocking `recv` and one `send_to` per message, the `ack` patched in place.
fn raw_echo(port: u32) -> Result<()> {
    let sock = Socket::open_at(Protocol::Usersock, port).context("binding the echo socket")?;
    println!("ready {}", sock.port());
    echo_loop(&sock)
}

/// Answers every datagram on `sock` to its sender, the `ack` patched in place.
fn echo_loop(sock: &Socket) -> Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    // nlmsghdr (16 bytes), then cn_msg: idx, val, seq, ack (offset 28).
    const ACK: usize = 16 + 12;
    loop {
        let meta = match sock.recv(&mut buf) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("echo recv"),
        };
        let d = &mut buf[..meta.len];
        if let Some(ack) = d.get_mut(ACK..ACK + 4) {
            let v = u32::from_ne_bytes([ack[0], ack[1], ack[2], ack[3]]).wrapping_add(1);
            ack.copy_from_slice(&v.to_ne_bytes());
        }
        sock.send_to(d, meta.from).context("echo send")?;
    }
}

/// The daemon, with per-user limits raised so that 64 subscribers and a publisher of one user fit (the
/// defaults allow 64 client sockets per user; a policy file's `[limits]` does the same for `cnlink bus`).
fn daemon(port: u32, echo: Option<CbId>) -> Result<()> {
    let limits =
        Limits { clients_per_user: 4096, subscriptions_per_user: 4096, routes_per_user: 4096, ..Limits::default() };
    let config = Config { policy: Policy { limits, ..Policy::default() }, ..Config::default() };
    let bus = Bus::bind(BusOptions { port, config, ..BusOptions::default() }).context("binding the bus")?;
    if let Some(id) = echo {
        bus.add_callback(id, "bench_echo", |ctx, d| {
            let _ = ctx.reply(d, &d.data);
        })?;
        bus.add_callback_inline(CbId::new(id.idx, id.val.wrapping_add(1)), "bench_echo_inline", |ctx, d| {
            let _ = ctx.reply(d, &d.data);
        })?;
    }
    println!("ready {}", bus.port());
    bus.run().context("bus run loop")
}

/// A remote agent: a registered `BusClient` answering with `serve_echo` (or, with `raw`, with the raw echo's
/// loop on the same socket: what the client library costs on the agent's side).
fn agent(bus: u32, id: CbId, raw: bool) -> Result<()> {
    let mut c = BusClient::connect(bus)?;
    c.wait_for_bus(Duration::from_secs(5))?;
    c.register(id, "bench_agent")?;
    println!("ready {}", c.port());
    if raw {
        // Only the bus writes to this socket now, and only what it forwards for `id`. The connector bounded its
        // blocking receives with SO_RCVTIMEO while it waited for the bus; the raw loop waits forever.
        c.connector().socket().set_recv_timeout(None)?;
        return echo_loop(c.connector().socket());
    }
    // The re-registration check runs once an hour: not during a run.
    c.serve_echo(&[(id, "bench_agent")], Duration::from_secs(3600), |_| true)?;
    Ok(())
}

/// What a subscriber counted.
#[derive(Debug, Default)]
struct Tally {
    received: u64,
    first_ns: u64,
    last_ns: u64,
    next: u64,
    missing: u64,
    out_of_order: u64,
    other: u64,
    overruns: u64,
}

impl Tally {
    fn add(&mut self, data: &[u8]) {
        let now = mono_ns();
        if self.received == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        self.received += 1;
        let Some(c) = data.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes) else {
            self.other += 1;
            return;
        };
        if c >= self.next {
            self.missing += c - self.next;
            self.next = c + 1;
        } else {
            self.out_of_order += 1;
        }
    }
}

/// A subscriber: joins, then counts until its stdin closes and its socket is empty.
fn subscriber(bus: u32, group: u32, id: CbId, rcvbuf: usize) -> Result<()> {
    let mut c = BusClient::connect(bus)?;
    if rcvbuf > 0 {
        c.connector().socket().set_recv_buffer(rcvbuf)?;
    }
    c.wait_for_bus(Duration::from_secs(5))?;
    c.join(group)?;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stop2.store(true, Ordering::Release);
    });
    let port = c.port();
    println!("ready {port}");
    let mut t = Tally::default();
    loop {
        // Read before waiting: the harness closes stdin only after the bus has sent everything, so an empty
        // wait that began after the close means the socket is drained.
        let stopping = stop.load(Ordering::Acquire);
        match c.recv(Some(Duration::from_millis(20))) {
            Ok(Some(ClientItem::Message(m))) if m.hdr.id == id => t.add(&m.data),
            Ok(Some(ClientItem::Message(_))) => t.other += 1,
            Ok(Some(_)) => {}
            Ok(None) if stopping => break,
            Ok(None) => {}
            Err(e) => return Err(e).context("subscriber recv"),
        }
    }
    t.overruns = c.counters().overruns;
    let out = serde_json::json!({
        "received": t.received, "first_ns": t.first_ns, "last_ns": t.last_ns, "missing": t.missing,
        "out_of_order": t.out_of_order, "other": t.other, "overruns": t.overruns,
        "kernel_drops": super::netlink_drops(port),
        "cpu_ns": super::cpu_ns(std::process::id()),
    });
    println!("{out}");
    Ok(())
}
