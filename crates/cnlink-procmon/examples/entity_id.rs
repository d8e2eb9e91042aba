//! Prints what the process model knows about one process: its entity id, parent, ancestry and entry leader, as
//! found in a snapshot of `/proc`.
//!
//! ```text
//! cargo run -p cnlink-procmon --example entity_id -- PID
//! ```

use cnlink_procmon::{HostIdentity, LiveProc, ProcSource, ProcessTable, TableConfig, Wants};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pid: i32 = match std::env::args().nth(1) {
        Some(p) => p.parse()?,
        None => std::process::id() as i32,
    };
    let mut table = ProcessTable::new(HostIdentity::read()?, TableConfig::default());
    table.seed(&LiveProc::default().snapshot(Wants::ALL));
    let Some(p) = table.get(pid) else {
        eprintln!("no process {pid}");
        std::process::exit(1);
    };
    println!("pid {} entity_id {} ({})", p.pid, p.entity_id, p.entity_id_source.name());
    println!("name {} status {}", p.program.name, p.status.name());
    if let Some(a) = &p.program.argv {
        println!("argv {:?}", a.args().map(String::from_utf8_lossy).collect::<Vec<_>>());
    }
    if let Some(c) = &p.cgroup {
        println!("cgroup {} container {:?} unit {:?}", c.path, c.class.container, p.unit());
    }
    for a in table.ancestors(pid, 64) {
        println!("  ancestor {} {} {}", a.pid, a.entity_id, a.program.name);
    }
    if let Some(l) = &p.entry_leader {
        println!("entry leader {} {} {} ({})", l.pid, l.entity_id, l.name, l.kind.name());
    }
    Ok(())
}
