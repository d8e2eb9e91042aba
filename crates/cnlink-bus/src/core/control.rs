//! Requests to the core's own id: the historical notification request and the bus's control ops. Each request is
//! decoded once; each op returns its reply body or its own error, and every refusal is counted, reported as an
//! [`Action::Denied`] and answered (PUBLISH excepted: it is never answered).

use cnlink::wire::{CbId, CnMsgHdr};

use super::clients::ClientLimit;
use super::limits::Kind;
use super::{
    Action, Core, Denial, LeaveError, NotifyError, Owner, Refusal, RegisterError, SendError, Sender, UnregisterError,
};
use crate::wire::{self as bw, BusOp, CtlMsg, ListEntry, ListPage, Request};

impl Core {
    pub(super) fn control(&mut self, from: Sender, hdr: CnMsgHdr, data: &[u8]) {
        self.stats.control += 1;
        let (op, id, answered, outcome) = match Request::parse(data) {
            // PUBLISH is never answered, not even when malformed.
            Err((op, e)) => (op, None, op != bw::BUS_OP_PUBLISH, Err(Refusal::Decode(e))),
            Ok(req) => {
                let id = match &req {
                    Request::Op(BusOp::Register { id, .. } | BusOp::Unregister { id }) => Some(*id),
                    _ => None,
                };
                let answered = !matches!(&req, Request::Op(op) if !op.is_answered());
                self.count_op(&req);
                (req.code(), id, answered, self.request(from, req))
            }
        };
        let (errno, body) = match outcome {
            Ok(body) => (0, body),
            Err(refusal) => {
                self.count(refusal);
                // A publisher with nobody listening is not worth a log line per message: ESRCH is counted.
                if answered || refusal != Refusal::Send(SendError::NoListeners) {
                    self.actions.push_back(Action::Denied(Denial { from, op, id, refusal }));
                }
                (refusal.errno(), Vec::new())
            }
        };
        if answered {
            self.reply(from.port, hdr, op, errno, &body);
        }
    }

    /// Counts a decoded request by its op.
    fn count_op(&mut self, req: &Request<'_>) {
        let s = &mut self.stats;
        *match req {
            Request::Notify(_) => &mut s.op_notify,
            Request::Op(BusOp::Register { .. }) => &mut s.op_register,
            Request::Op(BusOp::Unregister { .. }) => &mut s.op_unregister,
            Request::Op(BusOp::Join { .. }) => &mut s.op_join,
            Request::Op(BusOp::Leave { .. }) => &mut s.op_leave,
            Request::Op(BusOp::Send { .. }) => &mut s.op_send,
            Request::Op(BusOp::Publish { .. }) => &mut s.op_publish,
            Request::Op(BusOp::List { .. }) => &mut s.op_list,
            Request::Op(BusOp::Stats) => &mut s.op_stats,
        } += 1;
    }

    fn count(&mut self, refusal: Refusal) {
        if refusal.is_denied() {
            self.stats.denied += 1;
        } else if refusal.is_over_limit() {
            self.stats.over_limit += 1;
        } else if let Refusal::Decode(_) = refusal {
            self.stats.bad_control += 1;
        }
    }

    /// Carries out a decoded request; returns the reply body.
    fn request(&mut self, from: Sender, req: Request<'_>) -> Result<Vec<u8>, Refusal> {
        let empty = |_| Vec::new();
        match req {
            Request::Notify(req) => self.notify_request(from, req).map(empty).map_err(Refusal::Notify),
            Request::Op(op) => match op {
                BusOp::Register { id, name } => {
                    self.register_remote(from, id, &name).map(empty).map_err(Refusal::Register)
                }
                BusOp::Unregister { id } => self.unregister_remote(from, id).map(empty).map_err(Refusal::Unregister),
                BusOp::Join { group } => {
                    self.join(from, group).map_err(Refusal::Join)?;
                    // An explicit JOIN keeps the group even when the notification request that joined it goes.
                    if let Some(c) = self.clients.get_mut(&from.port) {
                        c.notify_groups.remove(&group);
                    }
                    Ok(Vec::new())
                }
                BusOp::Leave { group } => self.leave(from.port, group).map(empty).map_err(Refusal::Leave),
                BusOp::Send { group, msg } | BusOp::Publish { group, msg } => {
                    self.group_send(from, group, msg.header(), msg.data()).map(empty).map_err(Refusal::Send)
                }
                BusOp::List { start } => Ok(self.list_page(start).to_bytes()),
                BusOp::Stats => Ok(bw::stats_bytes(&self.stats().values())),
            },
        }
    }

    /// SEND and PUBLISH: `cn_netlink_send` to `group` (0: the group of the id's owner), never to the sender.
    fn group_send(&mut self, from: Sender, group: u32, hdr: CnMsgHdr, data: &[u8]) -> Result<(), SendError> {
        if !self.may_group_send(from, hdr.id) {
            return Err(SendError::Denied);
        }
        let group = if group == 0 { self.registry.get(hdr.id).ok_or(SendError::NoDevice)?.group } else { group };
        if group == 0 {
            // An id whose idx is 0 has group 0, which nobody can join; `send` would take the sender's port for a
            // unicast destination.
            self.stats.esrch += 1;
            return Err(SendError::NoListeners);
        }
        self.send(hdr, data, from.port, group).map(drop)
    }

    fn list_page(&self, start: u32) -> ListPage {
        let entries = self
            .registry
            .ordered()
            .skip(start as usize)
            .take(bw::LIST_PAGE)
            .map(|e| ListEntry {
                id: e.id,
                group: e.group,
                port: match e.owner {
                    Owner::Remote(p) => p,
                    _ => 0,
                },
                uid: e.uid,
                name: e.name.clone(),
            })
            .collect();
        ListPage { total: self.registry.len() as u32, entries }
    }

    fn register_remote(&mut self, from: Sender, id: CbId, name: &str) -> Result<(), RegisterError> {
        let uid = from.uid();
        if self.registry.get(id).is_some() {
            return Err(RegisterError::Duplicate);
        }
        if !self.policy.may_register(uid, id) {
            return Err(RegisterError::Denied);
        }
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Ids) {
            return Err(RegisterError::Limit);
        }
        self.ensure_client(from).map_err(|ClientLimit| RegisterError::Limit)?;
        let name = if name.is_empty() { "agent" } else { name };
        self.registry.insert(id, name, Owner::Remote(from.port), uid);
        self.ledger.take(uid, Kind::Ids);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.ids.insert(id);
        }
        self.registered(id, Owner::Remote(from.port));
        Ok(())
    }

    fn unregister_remote(&mut self, from: Sender, id: CbId) -> Result<(), UnregisterError> {
        let e = self.registry.get(id).ok_or(UnregisterError::NotRegistered)?;
        let uid = from.uid();
        let allowed = match e.owner {
            Owner::Remote(_) => uid == 0 || uid == e.uid,
            Owner::Local | Owner::Core => false,
        };
        if !allowed {
            return Err(UnregisterError::Denied);
        }
        self.remove_entry(id);
        Ok(())
    }

    /// The historical `cn_ctl_msg`: group 0 removes the requests with the same ranges (the sender's own; root's
    /// removes anyone's), and with a sender's last request for a group, the subscription the request made;
    /// another group stores the request once per sender and subscribes the sender to it.
    fn notify_request(&mut self, from: Sender, req: CtlMsg) -> Result<(), NotifyError> {
        let uid = from.uid();
        if req.idx.len() + req.val.len() > self.policy.limits.ranges_per_request {
            return Err(NotifyError::TooManyRanges);
        }
        if req.group == 0 {
            return self.remove_notify_requests(uid, &req);
        }
        if self.notify.contains(from.port, &req) {
            self.stats.notify_dedup += 1;
            return Ok(());
        }
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Notify) {
            return Err(NotifyError::Limit);
        }
        let joined_before = self.subs.is_member(req.group, from.port);
        self.join(from, req.group)?;
        self.ledger.take(uid, Kind::Notify);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.notify += 1;
            if !joined_before {
                c.notify_groups.insert(req.group);
            }
        }
        self.notify.add(from.port, uid, req);
        Ok(())
    }

    fn remove_notify_requests(&mut self, uid: u32, req: &CtlMsg) -> Result<(), NotifyError> {
        let removed = self.notify.remove_equal((uid != 0).then_some(uid), req);
        if removed.is_empty() {
            return Err(NotifyError::NotFound);
        }
        for s in removed {
            self.ledger.release(s.uid, Kind::Notify);
            let mut leave = false;
            if let Some(c) = self.clients.get_mut(&s.port) {
                c.notify -= 1;
                // The request subscribed its sender to its group: with the sender's last request for that group
                // gone, so is the subscription (unless the sender joined the group itself).
                leave = c.notify_groups.contains(&s.req.group) && !self.notify.has(s.port, s.req.group);
            }
            if leave {
                let _: Result<(), LeaveError> = self.leave(s.port, s.req.group);
            }
            self.maybe_drop_client(s.port);
        }
        Ok(())
    }

    /// Whether `from` may SEND a message carrying `id` to a group. In the kernel only the code that owns an id
    /// sends with it, and only the kernel can multicast on the connector; here a group message carrying `id`
    /// is taken by its subscribers as coming from that id's owner (a notification is exactly such a message),
    /// so it needs the same trust: root; the user that registered `id`; or a `[[send]]` rule of the policy
    /// naming that user and id. The bus's own id is root's alone, so nobody can forge the bus's replies.
    fn may_group_send(&self, from: Sender, id: CbId) -> bool {
        let uid = from.uid();
        if uid == 0 {
            return true;
        }
        if id == CbId::CONNECTOR {
            return false;
        }
        let owns = self.registry.get(id).is_some_and(|e| matches!(e.owner, Owner::Remote(_)) && e.uid == uid);
        owns || self.policy.grants_send(uid, id)
    }
}
