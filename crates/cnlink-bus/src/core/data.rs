//! Data messages to registered ids: forwarded to a remote owner with a reply route, handed to a local callback,
//! or, from the id's owner, routed back to the requester they answer.

use std::time::Instant;

use cnlink::wire::bytes::put_u32;
use cnlink::wire::{CbId, CnMsgHdr};

use super::limits::Kind;
use super::routes::RouteKey;
use super::{Action, Core, Delivery, Denial, MessageError, Owner, Refusal, Sender, MAX_ACTIONS};
use crate::wire::BUS_OP_MESSAGE;

impl Core {
    pub(super) fn data_msg(&mut self, now: Instant, from: Sender, hdr: CnMsgHdr, data: &[u8]) {
        let Some(entry) = self.registry.get(hdr.id) else {
            self.stats.unroutable += 1;
            return;
        };
        let owner = entry.owner;
        if owner == Owner::Remote(from.port) {
            return self.owner_msg(hdr, data);
        }
        if !self.policy.may_send(from.uid(), hdr.id) {
            return self.refuse_message(from, hdr, MessageError::Denied);
        }
        match owner {
            Owner::Remote(port) => {
                if let Err(e) = self.route(now, from, hdr) {
                    return self.refuse_message(from, hdr, e);
                }
                self.stats.forwarded += 1;
                self.unicast(port, hdr, data, from.port);
            }
            Owner::Local => {
                if self.actions.len() >= MAX_ACTIONS {
                    self.stats.dropped_local += 1;
                    return;
                }
                self.stats.delivered_local += 1;
                self.actions.push_back(Action::Deliver(Delivery { hdr, data: data.to_vec(), from }));
            }
            Owner::Core => {}
        }
    }

    /// Records where the reply to a request goes: `(id, seq, ack + 1)` back to the sender's port.
    ///
    /// The same socket repeating a request replaces its route. Another socket's route for the same reply is never
    /// taken over: the request is refused (`EBUSY`). A user at `routes_per_user` makes room by dropping its oldest
    /// route, from the same socket when it has one, so that one-way traffic is never refused and a socket that
    /// sends many messages uses up its own routes before those of the user's other sockets.
    fn route(&mut self, now: Instant, from: Sender, hdr: CnMsgHdr) -> Result<(), MessageError> {
        let uid = from.uid();
        let key: RouteKey = (hdr.id, hdr.seq, hdr.ack.wrapping_add(1));
        if let Some(r) = self.routes.get(&key) {
            if r.requester != from.port {
                self.stats.routes_busy += 1;
                return Err(MessageError::Busy);
            }
            self.drop_route(&key);
            self.stats.route_collisions += 1;
        }
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Routes) {
            let oldest = self.routes.oldest_of_port(from.port).or_else(|| self.routes.oldest_of_user(uid));
            match oldest {
                Some(k) => {
                    self.drop_route(&k);
                    self.stats.routes_evicted += 1;
                }
                // A limit of 0 routes: forward without a route (a reply will not reach the requester).
                None => return Ok(()),
            }
        }
        self.routes.insert(key, from.port, uid, now + self.route_timeout);
        self.ledger.take(uid, Kind::Routes);
        Ok(())
    }

    fn drop_route(&mut self, key: &RouteKey) {
        if let Some(r) = self.routes.remove(key) {
            self.ledger.release(r.uid, Kind::Routes);
        }
    }

    /// A message from the owner of its id: the reply to a forwarded request goes back to its requester. Anything
    /// else (a late or second reply, a reply by another rule) is dropped and counted: a group send is the SEND or
    /// PUBLISH op, never implied, so a reply cannot reach readers of the group.
    fn owner_msg(&mut self, hdr: CnMsgHdr, data: &[u8]) {
        match self.routes.remove(&(hdr.id, hdr.seq, hdr.ack)) {
            Some(route) => {
                self.ledger.release(route.uid, Kind::Routes);
                self.stats.replies_routed += 1;
                self.unicast(route.requester, hdr, data, 0);
            }
            None => self.stats.replies_unrouted += 1,
        }
    }

    /// Answers a data message that was not delivered: on the control id, op [`BUS_OP_MESSAGE`], with the id.
    fn refuse_message(&mut self, from: Sender, hdr: CnMsgHdr, e: MessageError) {
        let refusal = Refusal::Message(e);
        if refusal.is_denied() {
            self.stats.denied += 1;
        }
        self.actions.push_back(Action::Denied(Denial { from, op: BUS_OP_MESSAGE, id: Some(hdr.id), refusal }));
        self.reply(from.port, hdr, BUS_OP_MESSAGE, refusal.errno(), &id_bytes(hdr.id));
    }
}

/// An id as the refusal's body: `u32 idx, u32 val`.
fn id_bytes(id: CbId) -> [u8; 8] {
    let mut b = [0; 8];
    put_u32(&mut b, 0..4, id.idx);
    put_u32(&mut b, 4..8, id.val);
    b
}
