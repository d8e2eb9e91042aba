//! A remote agent that registers ids on a running bus and echoes every message to them (seq kept, ack + 1, same
//! payload), like the kernel's `cn_test` sample: `echo_agent BUS_PORT IDX.VAL [IDX.VAL...]`.
//!
//! Prints `ready PORT` once its ids are registered, then serves until killed. The tests run it as a separate
//! process (under other uids, and to `kill -9` it).

use std::io::Write;
use std::time::Duration;

use cnlink::wire::CbId;
use cnlink_bus::BusClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u32 = args.next().ok_or("usage: echo_agent BUS_PORT IDX.VAL...")?.parse()?;
    let ids: Vec<CbId> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let mut c = BusClient::connect(port)?;
    c.wait_for_bus(Duration::from_secs(5))?;
    for id in &ids {
        c.register(*id, "echo_agent")?;
    }
    println!("ready {}", c.port());
    std::io::stdout().flush()?;
    let named: Vec<(CbId, &str)> = ids.iter().map(|id| (*id, "echo_agent")).collect();
    c.serve_echo(&named, Duration::from_millis(300), |_| true)?;
    Ok(())
}
