//! CVE-2010-0410, the reason the kernel deleted its notification code: any local user could make the connector
//! store unlimited notification requests. Here an unprivileged user floods a bus daemon (a separate process) with
//! large distinct notification requests, registrations, subscriptions and unanswered requests from more sockets
//! than it may hold, and the daemon's memory and holdings stay bounded while it keeps serving others.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use cnlink::socket::{NlAddr, Protocol, Socket};
use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink_bus::core::Limits;
use cnlink_bus::wire::{BusOp, CtlMsg, NotifyRange};
use cnlink_bus::BusClient;
use common::*;

/// The flooding child's sockets: more than a user may hold clients.
const SOCKETS: u32 = 80;
/// Operations of each kind per socket.
const PER_SOCKET: u32 = 300;
/// An id registered by a remote agent that never answers, so every request to it holds a reply route.
const SILENT: CbId = CbId { idx: 5, val: 5 };
/// An id the daemon echoes, to show it keeps serving.
const ECHO: CbId = CbId { idx: 6, val: 6 };
/// Ranges per notification request: the most a request may carry, so each stored one is about 2 KiB.
const RANGES: u32 = 256;
/// The unprivileged user that floods.
const FLOODER: u32 = 65534;
/// The idx the default policy lets the flooder register ids in.
const FLOODER_IDX: u32 = cnlink_bus::policy::USER_IDX_BASE + FLOODER;

fn stats_of(c: &mut BusClient) -> std::collections::HashMap<String, u64> {
    c.stats().unwrap().into_iter().collect()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// What the flooding child does: every socket sends every kind of request and never reads a reply.
fn flood(port: u32) {
    let to = NlAddr::port(port);
    let socks: Vec<Socket> = (0..SOCKETS).map(|_| Socket::open(Protocol::Usersock).unwrap()).collect();
    for (s, sock) in socks.iter().enumerate() {
        let s = s as u32;
        let me = sock.port();
        let send = |seq: u32, id: CbId, data: &[u8]| {
            let d = wire::datagram(CnMsgHdr { id, seq, ack: seq, ..Default::default() }, data, me).unwrap();
            sock.send_to(&d, to).unwrap();
        };
        for i in 0..PER_SOCKET {
            let n = s * PER_SOCKET + i;
            // Distinct requests (no two share their ranges), each as large as a request may be.
            let ranges = (0..RANGES / 2).map(|r| NotifyRange { first: n * RANGES + r, range: 1 }).collect::<Vec<_>>();
            let req = CtlMsg { group: n % 1000 + 1, idx: ranges.clone(), val: ranges };
            send(4 * n, CbId::CONNECTOR, &req.to_bytes());
            // Ids of the flooder's own idx: the default policy lets it register those, up to its quota.
            let reg = BusOp::Register { id: CbId::new(FLOODER_IDX, n), name: "flood".into() }.to_bytes();
            send(4 * n + 1, CbId::CONNECTOR, &reg);
            send(4 * n + 2, CbId::CONNECTOR, &BusOp::Join { group: 1000 + n }.to_bytes());
            send(4 * n + 3, SILENT, b"");
        }
    }
    // On a line of its own: libtest has already printed "test NAME ... " without a newline.
    println!("\nflood done");
    // Hold everything until the parent has measured: it closes our stdin.
    let _ = std::io::stdin().read_line(&mut String::new());
}

#[test]
fn an_unprivileged_flood_leaves_the_daemon_bounded() {
    if let Ok(port) = std::env::var("CNLINK_BUS_FLOOD_PORT") {
        return flood(port.parse().unwrap());
    }
    if !is_root() {
        return skip("needs root (to flood as another, unprivileged user)");
    }
    let port = 0x636E_0000 | (std::process::id() & 0xffff) ^ 0x5a5a;
    let mut daemon = Command::new(example_binary("bus_daemon"))
        .args([port.to_string(), ECHO.to_string()])
        .stdout(Stdio::piped())
        // It logs the first hundred of the flood's denials; the counters checked below say the rest.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let daemon = Agent { child: daemon, port };
    let pid = daemon.child.id();
    let mut root = BusClient::connect(port).unwrap();
    // Root registers SILENT remotely, on a socket of its own that never reads what the bus forwards to it (the
    // bus drops what does not fit), so that `root` sees only its own replies.
    let mut silent = BusClient::connect(port).unwrap();
    silent.register(SILENT, "silent").unwrap();
    // Warm up the daemon's buffers with ordinary traffic before the baseline.
    for i in 0..2000u32 {
        let r = root.request(ECHO, &i.to_ne_bytes(), Duration::from_secs(2)).unwrap();
        assert_eq!(r.data, i.to_ne_bytes());
    }
    let before = vm_rss_kib(pid);

    let mut flooder = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "an_unprivileged_flood_leaves_the_daemon_bounded", "--nocapture", "--test-threads=1"])
        .env("CNLINK_BUS_FLOOD_PORT", port.to_string())
        .env_remove("CI")
        .uid(FLOODER)
        .gid(FLOODER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(flooder.stdout.take().unwrap());
    let flooded = std::iter::from_fn(|| {
        let mut l = String::new();
        (out.read_line(&mut l).ok()? > 0).then_some(l)
    })
    .any(|l| l.trim() == "flood done");
    assert!(flooded, "the flooding child did not finish: {:?}", flooder.wait());

    // The daemon has handled everything once a request sent after the flood comes back. The flooder is still
    // alive and holding its sockets: what the daemon keeps for it now is what a flood can make it keep.
    assert_eq!(root.request(ECHO, b"after", Duration::from_secs(30)).unwrap().data, b"after");
    let during = vm_rss_kib(pid);
    let stats = stats_of(&mut root);
    let limits = Limits::default();
    let sent = (SOCKETS * PER_SOCKET) as u64;
    // Nothing was lost on the way in: every datagram was handled (the flood's 4 per op, plus root's traffic).
    assert!(stats["received"] >= 4 * sent, "{stats:?}");
    // The flooder holds exactly one user's quota of everything (root holds one client and one id; the core's
    // own id and the echo callback are the other two ids).
    assert!(stats["clients"] <= limits.clients_per_user as u64 + 1, "{stats:?}");
    assert_eq!(stats["notify_requests"], limits.notify_per_user as u64, "{stats:?}");
    assert_eq!(stats["ids"], limits.ids_per_user as u64 + 3, "{stats:?}");
    assert_eq!(stats["subscriptions"], limits.subscriptions_per_user as u64, "{stats:?}");
    assert_eq!(stats["routes"], limits.routes_per_user as u64, "{stats:?}");
    // Most of it was refused, and counted.
    assert!(stats["over_limit"] >= 3 * sent - 3000, "{stats:?}");
    // ~24,000 distinct 2 KiB requests would be ~50 MiB if stored; bounded, the daemon grows by far less.
    let grown_mib = during.saturating_sub(before) as f64 / 1024.0;
    eprintln!("daemon VmRSS {before} KiB -> {during} KiB (+{grown_mib:.1} MiB); {stats:?}");
    assert!(grown_mib < 8.0, "the daemon grew by {grown_mib:.1} MiB under the flood");

    // When the flooder goes, everything it held goes with it (noticed through its pidfd, without traffic).
    drop(flooder.stdin.take());
    assert!(flooder.wait().unwrap().success());
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = stats_of(&mut root);
            (s["clients"], s["notify_requests"], s["subscriptions"], s["ids"]) == (1, 0, 0, 3)
        }),
        "the flooder's state was freed: {:?}",
        stats_of(&mut root)
    );
    drop(silent);
    drop(daemon);
}
