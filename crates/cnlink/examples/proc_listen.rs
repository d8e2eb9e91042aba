//! Prints every process event, one line each, and every loss; stops after COUNT events if given.
//!
//! ```text
//! cargo run --release -p cnlink --example proc_listen [COUNT]
//! ```

use std::io::{BufWriter, Write};
use std::time::Duration;

use cnlink::proc::{Loss, ProcEvents, ProcItem, ProcOptions};
use cnlink::wire::ProcEvent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limit: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(u64::MAX);
    let mut events = ProcEvents::subscribe(ProcOptions::default())?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let (mut items, mut seen) = (Vec::new(), 0u64);
    while seen < limit {
        items.clear();
        events.recv_items(&mut items, None)?;
        for item in &items {
            match *item {
                ProcItem::Event(e) if seen < limit => {
                    seen += 1;
                    let ev = ProcEvent { cpu: e.cpu, timestamp_ns: e.timestamp_ns, data: e.data };
                    writeln!(out, "{ev}")?;
                }
                ProcItem::Lost(Loss::Exact(n)) => writeln!(out, "lost count={n}")?,
                ProcItem::Lost(Loss::AtLeast(n)) => writeln!(out, "lost count>={n}")?,
                ProcItem::Lost(Loss::Unknown) => writeln!(out, "lost count=?")?,
                ProcItem::Overrun => writeln!(out, "overrun")?,
                _ => {}
            }
        }
        out.flush()?;
        // Let events accumulate so that each wake-up drains many: a bounded added latency for far fewer syscalls.
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
