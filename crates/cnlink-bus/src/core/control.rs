//! Requests to the core's own id: the historical notification request and the bus's control ops.

use std::time::Instant;

use cnlink::wire::{CbId, CnMsgHdr};

use super::limits::Kind;
use super::{Core, Denial, Event, Owner, Sender};
use crate::wire::{self as bw, BusOp, CtlError, CtlMsg, ListEntry, ListPage, Request};

/// An op's outcome: an errno (0 for success) and a reply body.
type Outcome = (u32, Vec<u8>);

fn err(errno: i32) -> Outcome {
    (errno as u32, Vec::new())
}

const OK: u32 = 0;

impl Core {
    pub(super) fn control(&mut self, _now: Instant, from: Sender, hdr: CnMsgHdr, data: &[u8]) {
        self.stats.control += 1;
        let (op, (errno, body)) = match Request::parse(data) {
            Err((op, e)) => {
                self.stats.bad_control += 1;
                let errno = if matches!(e, CtlError::UnknownOp(_)) { libc::EOPNOTSUPP } else { libc::EINVAL };
                (op, err(errno))
            }
            Ok(Request::Notify(req)) => (0, self.notify_request(from, req)),
            Ok(Request::Op(op)) => (op.code(), self.op(from, op)),
        };
        if errno != OK {
            let id = match Request::parse(data) {
                Ok(Request::Op(BusOp::Register { id, .. } | BusOp::Unregister { id })) => Some(id),
                _ => None,
            };
            if errno == libc::EPERM as u32 {
                self.stats.denied += 1;
            } else if errno == libc::EDQUOT as u32 {
                self.stats.over_limit += 1;
            }
            self.events.push_back(Event::Denied(Denial { from, op, id, errno }));
        }
        self.reply(from.port, hdr, op, errno, &body);
    }

    fn op(&mut self, from: Sender, op: BusOp<'_>) -> Outcome {
        match op {
            BusOp::Register { id, name } => match self.register_remote(from, id, &name) {
                Ok(()) => (OK, Vec::new()),
                Err(e) => err(e as i32),
            },
            BusOp::Unregister { id } => err(self.unregister_remote(from, id) as i32),
            BusOp::Join { group } => {
                let errno = self.join(from, group);
                // An explicit JOIN keeps the group even when the notification request that joined it goes.
                if let Some(c) = self.clients.get_mut(&from.port) {
                    c.notify_groups.remove(&group);
                }
                err(errno as i32)
            }
            BusOp::Leave { group } => err(if self.leave(from.port, group) { 0 } else { libc::ENOENT }),
            BusOp::Send { group, msg } => {
                let id = msg.id();
                if !self.may_group_send(from, id) {
                    return err(libc::EPERM);
                }
                let group = if group == 0 {
                    match self.registry.get(id) {
                        Some(e) => e.group,
                        None => return err(libc::ENODEV),
                    }
                } else {
                    group
                };
                if group == 0 {
                    // An id whose idx is 0 has group 0, which nobody can join; `send` would take the sender's
                    // port for a unicast destination.
                    self.stats.esrch += 1;
                    return err(libc::ESRCH);
                }
                match self.send(msg.header(), msg.data(), from.port, group) {
                    Ok(_) => (OK, Vec::new()),
                    Err(e) => err(e.errno() as i32),
                }
            }
            BusOp::List { start } => (OK, self.list_page(start).to_bytes()),
            BusOp::Stats => (OK, bw::stats_bytes(&self.stats().values())),
        }
    }

    fn list_page(&self, start: u32) -> ListPage {
        let all = self.registry.ordered();
        let entries = all
            .iter()
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
        ListPage { total: all.len() as u32, entries }
    }

    fn register_remote(&mut self, from: Sender, id: CbId, name: &str) -> Result<(), u32> {
        let uid = from.uid();
        if self.registry.get(id).is_some() {
            return Err(libc::EINVAL as u32);
        }
        if !self.policy.may_register(uid, id) {
            return Err(libc::EPERM as u32);
        }
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Ids) {
            return Err(libc::EDQUOT as u32);
        }
        self.ensure_client(from)?;
        let name = if name.is_empty() { "agent" } else { name };
        self.registry.insert(id, name, Owner::Remote(from.port), uid);
        self.ledger.take(uid, Kind::Ids);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.ids.insert(id);
        }
        self.registered(id, Owner::Remote(from.port));
        Ok(())
    }

    fn unregister_remote(&mut self, from: Sender, id: CbId) -> u32 {
        let Some(e) = self.registry.get(id) else { return libc::ENOENT as u32 };
        let uid = from.uid();
        let allowed = match e.owner {
            Owner::Remote(_) => uid == 0 || uid == e.uid,
            Owner::Local | Owner::Core => false,
        };
        if !allowed {
            return libc::EPERM as u32;
        }
        self.remove_entry(id);
        OK
    }

    fn join(&mut self, from: Sender, group: u32) -> u32 {
        if group == 0 {
            return libc::EINVAL as u32;
        }
        if self.subs.is_member(group, from.port) {
            return OK;
        }
        let uid = from.uid();
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Subscriptions) {
            return libc::EDQUOT as u32;
        }
        if let Err(e) = self.ensure_client(from) {
            return e;
        }
        self.subs.join(group, from.port);
        self.ledger.take(uid, Kind::Subscriptions);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.groups.insert(group);
        }
        OK
    }

    /// The historical `cn_ctl_msg`: group 0 removes the requests with the same ranges (the sender's own; root's
    /// removes anyone's), and with a sender's last request for a group, the subscription the request made;
    /// another group stores the request once per sender and subscribes the sender to it.
    fn notify_request(&mut self, from: Sender, req: CtlMsg) -> Outcome {
        let uid = from.uid();
        if req.idx.len() + req.val.len() > self.policy.limits.ranges_per_request {
            return err(libc::E2BIG);
        }
        if req.group == 0 {
            let removed = self.notify.remove_equal((uid != 0).then_some(uid), &req);
            if removed.is_empty() {
                return err(libc::ENOENT);
            }
            for s in removed {
                self.ledger.release(s.uid, Kind::Notify);
                let mut leave = false;
                if let Some(c) = self.clients.get_mut(&s.port) {
                    c.notify -= 1;
                    // The request subscribed its sender to its group: with the sender's last request for that
                    // group gone, so is the subscription (unless the sender joined the group itself).
                    leave = c.notify_groups.contains(&s.req.group) && !self.notify.has(s.port, s.req.group);
                }
                if leave {
                    self.leave(s.port, s.req.group);
                }
                self.maybe_drop_client(s.port);
            }
            return (OK, Vec::new());
        }
        if self.notify.contains(from.port, &req) {
            self.stats.notify_dedup += 1;
            return (OK, Vec::new());
        }
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Notify) {
            return err(libc::EDQUOT);
        }
        let joined_before = self.subs.is_member(req.group, from.port);
        let errno = self.join(from, req.group);
        if errno != OK {
            return err(errno as i32);
        }
        self.ledger.take(uid, Kind::Notify);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.notify += 1;
            if !joined_before {
                c.notify_groups.insert(req.group);
            }
        }
        self.notify.add(from.port, uid, req);
        (OK, Vec::new())
    }
}

impl Core {
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
