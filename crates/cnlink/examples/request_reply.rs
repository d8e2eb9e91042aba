//! Sends one request to a connector id and prints the reply matched by seq/ack.
//!
//! ```text
//! cargo run -p cnlink --example request_reply                          # ask the kernel's proc connector
//! cargo run -p cnlink --example request_reply -- 14.1110 hello 0x636E6C6B   # ask an id on the userspace bus
//! ```
//!
//! Without arguments it sends the proc connector a LISTEN request, which the kernel answers with an ack whose
//! `ack` is the request's plus one (the `AckPlusOne` rule), then unsubscribes. With `IDX.VAL DATA BUS_PORT` it
//! sends DATA to that id through the bus listening on `BUS_PORT` (NETLINK_USERSOCK), matched by the documents'
//! rule: same seq, ack + 1. The reply's datagram is printed as it arrived; text from the peer is escaped.

use std::time::Duration;

use cnlink::socket::{NlAddr, Protocol};
use cnlink::wire::{CbId, Escaped, McastOp, Pretty, ProcInput};
use cnlink::{Connector, MatchRule, Trust};

fn parse_port(s: &str) -> Result<u32, std::num::ParseIntError> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let timeout = Duration::from_secs(2);
    if let [id, data, port] = &args[..] {
        let bus = NlAddr::port(parse_port(port)?);
        let mut c = Connector::open_with(Protocol::Usersock, bus, MatchRule::Documented, Trust::PeerOnly)?;
        let reply = c.request(id.parse::<CbId>()?, data.as_bytes(), timeout)?;
        println!("reply from {} seq={} ack={}: {}", reply.hdr.id, reply.hdr.seq, reply.hdr.ack, Escaped(&reply.data));
        return Ok(());
    }
    let mut c = Connector::open_with(Protocol::Connector, NlAddr::KERNEL, MatchRule::AckPlusOne, Trust::PeerOnly)?;
    c.join(1)?;
    let (listen, n) = ProcInput::Legacy(McastOp::Listen).to_bytes();
    let reply = c.request(CbId::PROC, &listen[..n], timeout)?;
    print!("{}", Pretty(&reply.datagram));
    let (ignore, n) = ProcInput::Legacy(McastOp::Ignore).to_bytes();
    c.send(CbId::PROC, &ignore[..n])?;
    Ok(())
}
