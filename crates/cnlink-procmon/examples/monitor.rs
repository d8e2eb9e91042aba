//! Process events with their entity ids, arguments and ancestry, from a blocking iterator.
//!
//! ```text
//! sudo cargo run -p cnlink-procmon --example monitor -- [SECONDS]
//! ```
//!
//! Prints one line per exec and exit (`exec 1234 <id> sh -c ... <- bash <- sshd <- systemd`) and every loss,
//! then `done` after SECONDS (default: forever).

use std::time::{Duration, Instant};

use cnlink::wire::EventData;
use cnlink_procmon::{Monitor, MonitorItem, Selection};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: Option<u64> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    let mut monitor = Monitor::builder().events(Selection::parse("exec,exit")?).ancestry_depth(8).build()?;
    println!("ready");
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut items = Vec::new();
    while deadline.is_none_or(|d| Instant::now() < d) {
        items.clear();
        monitor.recv(&mut items, Some(Duration::from_millis(100)))?;
        for item in &items {
            match item {
                MonitorItem::Record(r) => {
                    let (Some(p), Some(id)) = (&r.process, r.entity_id) else { continue };
                    let what = if matches!(r.event.data, EventData::Exec { .. }) { "exec" } else { "exit" };
                    let argv = p.program.argv.as_ref().map_or(String::new(), |a| a.joined_lossy());
                    let line: Vec<String> = r.ancestors.iter().map(|a| a.program.name.to_string()).collect();
                    println!("{what} {} {id} {argv} <- {}", p.pid, line.join(" <- "));
                }
                MonitorItem::Lost(l) => println!("lost {:?} ({})", l.count, l.cause.name()),
            }
        }
    }
    monitor.stop();
    let c = monitor.counters();
    println!("done: {} received, {} lost", c.received.iter().sum::<u64>(), c.losses.total());
    Ok(())
}
