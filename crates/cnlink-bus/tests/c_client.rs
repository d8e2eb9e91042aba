//! A C client written from the documents' pseudocode (tests/c/echo_client.c), compiled with the system compiler,
//! sends requests to an echo agent through the bus and checks each reply's seq, ack and payload.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cnlink::wire::CbId;
use cnlink_bus::BusOptions;
use common::*;

/// The compiled C client (compiled once per test process); `None` when there is no C compiler.
fn compile() -> Option<PathBuf> {
    static BIN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BIN.get_or_init(compile_once).clone()
}

/// Compiles the C client into a fresh temporary directory.
fn compile_once() -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/echo_client.c");
    let dir = std::env::temp_dir().join(format!("cnlink-bus-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("echo_client");
    let st = Command::new(&cc).args(["-std=gnu99", "-Wall", "-Werror", "-O1", "-o"]).arg(&bin).arg(&src).status();
    match st {
        Ok(s) if s.success() => Some(bin),
        Ok(s) => panic!("{cc} failed to compile {}: {s}", src.display()),
        Err(_) => None,
    }
}

fn run_client(bin: &Path, port: u32, id: CbId, count: u32) -> String {
    let out = Command::new(bin)
        .args([port.to_string(), id.idx.to_string(), id.val.to_string(), count.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "C client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// The `cnlink` binary next to this test's target directory, when the workspace built it.
fn cnlink_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("cnlink");
    p.exists().then_some(p)
}

#[test]
fn c_client_from_the_documents_talks_to_cnlink_bus_echo() {
    let Some(bin) = compile() else { return skip("no C compiler (cc) found") };
    let h = start_bus(BusOptions::default());
    let port = h.bus().port();
    let id = CbId::new(14, 0x456);
    // `cnlink bus echo` itself when the workspace built it; otherwise the example agent, which runs the same
    // library loop (BusClient::serve_echo).
    let _agent = match cnlink_binary() {
        Some(cnlink) => {
            let mut child = Command::new(cnlink)
                .args(["bus", "echo", &id.to_string(), "--port", &port.to_string()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut probe = cnlink_bus::BusClient::connect(port).unwrap();
            if !eventually(std::time::Duration::from_secs(5), || {
                probe.list().is_ok_and(|l| l.iter().any(|e| e.id == id))
            }) {
                let _ = child.kill();
                panic!("cnlink bus echo did not register {id}");
            }
            Agent { child, port: 0 }
        }
        None => spawn_agent(port, &[id], None).unwrap(),
    };
    let out = run_client(&bin, port, id, 5);
    assert!(out.contains("5/5 matched"), "{out}");
    assert!(out.contains("14.1110 seq 4 "), "{out}");
}

#[test]
fn c_client_talks_to_a_callback_inside_the_daemon() {
    let Some(bin) = compile() else { return skip("no C compiler (cc) found") };
    let h = start_bus(BusOptions::default());
    let id = CbId::new(7, 1);
    h.bus().add_callback(id, "dmlogusr", |ctx, d| ctx.reply(d, &d.data).unwrap()).unwrap();
    let out = run_client(&bin, h.bus().port(), id, 3);
    assert!(out.contains("3/3 matched"), "{out}");
}
