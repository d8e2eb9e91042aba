//! The sans-IO side of a generic connector client: framing outgoing messages, trusting and decoding incoming ones,
//! and matching replies to requests.

use std::collections::VecDeque;
use std::time::Instant;

use crate::wire::{self, CbId, CnMsgHdr, CnMsgs, NlAddr, NlKind, NlMessages, NlMsgHdr, WireError};

use super::genealogy::{Genealogy, MatchRule, Pending};

pub use crate::socket::Credentials;

/// One received connector message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMsg {
    /// The netlink header it came in.
    pub nl: NlMsgHdr,
    /// The `cn_msg` header.
    pub hdr: CnMsgHdr,
    /// The `len` data bytes.
    pub data: Vec<u8>,
    /// Who sent it (port 0 is the kernel) and to which group.
    pub from: NlAddr,
    /// The sender's credentials, when the socket asked for them.
    pub creds: Option<Credentials>,
}

/// Whose messages a client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Only the peer's port (the kernel's 0 on the connector, the bus's port on the bus).
    PeerOnly,
    /// Anyone (listening tools; the sender is in every [`OwnedMsg`]).
    Anyone,
}

/// Counters of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Messages accepted.
    pub received: u64,
    /// Datagrams dropped because their sender is not trusted.
    pub rejected: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
}

/// Frames requests and sorts what comes back into replies and new messages.
#[derive(Debug, Clone)]
pub struct ClientCore {
    genealogy: Genealogy,
    peer: NlAddr,
    trust: Trust,
    replies: Vec<((u32, u32), OwnedMsg)>,
    messages: VecDeque<OwnedMsg>,
    stats: ClientStats,
}

impl ClientCore {
    /// A client talking to `peer`, matching replies by `rule`, numbering from a random `initial_ack`.
    pub fn new(peer: NlAddr, rule: MatchRule, trust: Trust, initial_ack: u32) -> Self {
        ClientCore {
            genealogy: Genealogy::new(rule, initial_ack),
            peer,
            trust,
            replies: Vec::new(),
            messages: VecDeque::new(),
            stats: ClientStats::default(),
        }
    }

    /// The peer requests go to.
    pub fn peer(&self) -> NlAddr {
        self.peer
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// Frames a new message to `id` with the next `(seq, ack)`; returns the datagram and the numbers.
    pub fn frame(&mut self, id: CbId, data: &[u8], nlmsg_pid: u32) -> Result<(Vec<u8>, u32, u32), WireError> {
        let (seq, ack) = self.genealogy.next_numbers();
        let d = wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, nlmsg_pid)?;
        Ok((d, seq, ack))
    }

    /// Starts waiting for the reply to `(seq, ack)` until `deadline`.
    pub fn expect(&mut self, seq: u32, ack: u32, deadline: Instant) {
        self.genealogy.expect(seq, ack, deadline);
    }

    /// Takes the reply to `(seq, ack)` if it has arrived.
    pub fn take_reply(&mut self, seq: u32, ack: u32) -> Option<OwnedMsg> {
        let i = self.replies.iter().position(|(k, _)| *k == (seq, ack))?;
        Some(self.replies.swap_remove(i).1)
    }

    /// Gives up on requests whose deadline has passed; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<Pending> {
        self.genealogy.expire(now)
    }

    /// Takes the oldest message that was not a reply.
    pub fn next_message(&mut self) -> Option<OwnedMsg> {
        self.messages.pop_front()
    }

    /// Sorts one received datagram into replies and new messages.
    pub fn handle(&mut self, from: NlAddr, creds: Option<Credentials>, datagram: &[u8]) {
        if self.trust == Trust::PeerOnly && from.port != self.peer.port {
            self.stats.rejected += 1;
            return;
        }
        for nl in NlMessages::new(datagram) {
            let Ok(nl) = nl else {
                self.stats.malformed += 1;
                return;
            };
            if !matches!(nl.kind(), NlKind::Data(_)) {
                continue;
            }
            for cn in CnMsgs::new(nl.payload()) {
                let Ok(cn) = cn else {
                    self.stats.malformed += 1;
                    break;
                };
                self.stats.received += 1;
                let msg = OwnedMsg { nl: nl.header(), hdr: cn.header(), data: cn.data().to_vec(), from, creds };
                match self.genealogy.on_message(msg.hdr.seq, msg.hdr.ack) {
                    Some(req) => self.replies.push(((req.seq, req.ack), msg)),
                    None => self.messages.push_back(msg),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn replies_and_new_messages_are_sorted() {
        let mut c = ClientCore::new(NlAddr::KERNEL, MatchRule::Documented, Trust::PeerOnly, 100);
        let (_, seq, ack) = c.frame(CbId::new(14, 0x456), b"hi", 0).unwrap();
        c.expect(seq, ack, Instant::now() + Duration::from_secs(1));
        let notice =
            wire::datagram(CnMsgHdr { id: CbId::new(14, 0x457), seq: 9, ack: 0, ..Default::default() }, b"n", 0);
        c.handle(NlAddr::KERNEL, None, &notice.unwrap());
        let reply =
            wire::datagram(CnMsgHdr { id: CbId::new(14, 0x456), seq, ack: ack + 1, ..Default::default() }, b"hi", 0);
        c.handle(NlAddr { port: 77, groups: 0 }, None, reply.as_ref().unwrap());
        assert_eq!(c.stats().rejected, 1, "not from the peer");
        assert!(c.take_reply(seq, ack).is_none());
        c.handle(NlAddr::KERNEL, None, &reply.unwrap());
        assert_eq!(c.take_reply(seq, ack).unwrap().data, b"hi");
        assert_eq!(c.next_message().unwrap().hdr.seq, 9);
        assert!(c.next_message().is_none());
    }
}
