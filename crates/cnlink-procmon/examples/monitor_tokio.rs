//! Process events with their entity ids and ancestry as an async `Stream`, on tokio (feature `tokio`).
//!
//! ```text
//! sudo cargo run -p cnlink-procmon --features tokio --example monitor_tokio -- [SECONDS]
//! ```
//!
//! Prints one line per exec (`exec 1234 <id> sh <- bash <- sshd`) and every loss, then `done` after SECONDS
//! (default: forever).

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use cnlink_procmon::{Monitor, MonitorItem, Selection};
use futures_core::Stream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: Option<u64> = std::env::args().nth(1).map(|s| s.parse()).transpose()?;
    let mut monitor = Monitor::builder().events(Selection::parse("exec")?).ancestry_depth(8).build()?;
    println!("ready");
    let run = async {
        while let Some(item) = poll_fn(|cx| Pin::new(&mut monitor).poll_next(cx)).await {
            match item? {
                MonitorItem::Record(r) => {
                    let (Some(p), Some(id)) = (&r.process, r.entity_id) else { continue };
                    let line: Vec<String> = r.ancestors.iter().map(|a| a.program.name.to_string()).collect();
                    println!("exec {} {id} {} <- {}", p.pid, p.program.name, line.join(" <- "));
                }
                MonitorItem::Lost(l) => println!("lost {:?} ({})", l.count, l.cause.name()),
            }
        }
        Ok::<(), cnlink_procmon::MonitorError>(())
    };
    match seconds {
        Some(s) => {
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(s), run).await {
                r?;
            }
        }
        None => run.await?,
    }
    println!("done: {} lost", monitor.counters().losses.total());
    Ok(())
}
