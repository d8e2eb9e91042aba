//! A bus daemon in a dozen lines: `bus_daemon PORT [IDX.VAL...]` binds the connector core to port id `PORT` on
//! `NETLINK_USERSOCK` with the default policy and limits, registers an in-daemon echo callback (the `cn_test`
//! twin, run on the receive thread) for each id given, prints `ready`, and serves until killed. `cnlink bus` is
//! the full-featured version.
//!
//! The tests run it as a separate process to measure its memory under a flood.

use std::io::Write;

use cnlink::wire::CbId;
use cnlink_bus::{Bus, BusOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u32 = args.next().ok_or("usage: bus_daemon PORT [IDX.VAL...]")?.parse()?;
    let bus = Bus::bind(BusOptions { port, ..BusOptions::default() })?;
    for id in args {
        let id: CbId = id.parse()?;
        // The echo never blocks (a reply is one non-blocking send), so it runs on the receive thread.
        bus.add_callback_inline(id, "echo", |ctx, msg| {
            let _ = ctx.reply(msg, &msg.data);
        })?;
    }
    println!("ready");
    std::io::stdout().flush()?;
    bus.run()?;
    Ok(())
}
