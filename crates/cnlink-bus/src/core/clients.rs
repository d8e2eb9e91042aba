//! Client bookkeeping: a port that holds state (an id, a subscription, a notification request) is a client,
//! watched through its process and cleaned up when it goes.

use std::collections::BTreeSet;

use cnlink::wire::CbId;

use super::limits::Kind;
use super::{Action, Core, JoinError, LeaveError, Sender};

/// A client socket that holds state.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) uid: u32,
    pub(super) ids: BTreeSet<CbId>,
    pub(super) groups: BTreeSet<u32>,
    /// Groups of `groups` this client is in only because a notification request of its subscribed it: removing
    /// its last request for such a group leaves the group too.
    pub(super) notify_groups: BTreeSet<u32>,
    pub(super) notify: usize,
}

/// A client record could not be made: the user has `clients_per_user` clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ClientLimit;

impl Core {
    /// Cleans up after a client whose process exited or whose socket is closed: unregisters its ids (with
    /// notifications), drops its subscriptions, requests and routes.
    pub fn client_gone(&mut self, port: u32) {
        self.routes.remove_requester(port).into_iter().for_each(|r| self.ledger.release(r.uid, Kind::Routes));
        let Some(client) = self.clients.get(&port) else { return };
        let (ids, groups) = (client.ids.clone(), client.groups.clone());
        self.stats.clients_gone += 1;
        // Its requests and subscriptions first, so that the notifications for its ids do not go to itself.
        for s in self.notify.remove_port(port) {
            self.ledger.release(s.uid, Kind::Notify);
        }
        if let Some(c) = self.clients.get_mut(&port) {
            c.notify = 0;
        }
        for g in groups {
            let _ = self.leave(port, g);
        }
        for id in ids {
            self.remove_entry(id);
        }
        if let Some(c) = self.clients.remove(&port) {
            self.ledger.release(c.uid, Kind::Clients);
            self.actions.push_back(Action::Unwatch { port });
        }
    }

    /// Reports a failed send to `port`: `ECONNREFUSED` means its socket is closed (the client is cleaned up);
    /// other errors are counted as drops.
    pub fn send_failed(&mut self, port: u32, errno: i32) {
        if errno == libc::ECONNREFUSED {
            self.client_gone(port);
        } else {
            self.stats.dropped_full += 1;
        }
    }

    /// A port seen before under another uid was closed and reused: forget the old client and the old socket's
    /// reply routes. Without credentials the sender counts as [`super::UNKNOWN_UID`], another user, so that
    /// everything a client holds is counted under one uid and given back to that uid.
    pub(super) fn check_identity(&mut self, from: &Sender) {
        let uid = from.uid();
        let reused = self.clients.get(&from.port).is_some_and(|c| c.uid != uid)
            || self.routes.oldest_of_port(from.port).and_then(|k| self.routes.get(&k)).is_some_and(|r| r.uid != uid);
        if reused {
            self.client_gone(from.port);
        }
    }

    /// Makes sure `from` has a client record (counted against its user's client limit), asking the driver to
    /// watch its process.
    pub(super) fn ensure_client(&mut self, from: Sender) -> Result<(), ClientLimit> {
        if self.clients.contains_key(&from.port) {
            return Ok(());
        }
        let uid = from.uid();
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Clients) {
            return Err(ClientLimit);
        }
        self.ledger.take(uid, Kind::Clients);
        self.clients.insert(
            from.port,
            Client { uid, ids: BTreeSet::new(), groups: BTreeSet::new(), notify_groups: BTreeSet::new(), notify: 0 },
        );
        if let Some(c) = from.creds {
            self.actions.push_back(Action::Watch { port: from.port, pid: c.pid });
        }
        Ok(())
    }

    /// Drops a client record that holds nothing.
    pub(super) fn maybe_drop_client(&mut self, port: u32) {
        let Some(c) = self.clients.get(&port) else { return };
        if c.ids.is_empty() && c.groups.is_empty() && c.notify == 0 {
            self.ledger.release(c.uid, Kind::Clients);
            self.clients.remove(&port);
            self.actions.push_back(Action::Unwatch { port });
        }
    }

    /// Subscribes `from` to `group` (nothing more if it already is).
    pub(super) fn join(&mut self, from: Sender, group: u32) -> Result<(), JoinError> {
        if group == 0 {
            return Err(JoinError::GroupZero);
        }
        if self.subs.is_member(group, from.port) {
            return Ok(());
        }
        let uid = from.uid();
        if !self.ledger.has_room(&self.policy.limits, uid, Kind::Subscriptions) {
            return Err(JoinError::Limit);
        }
        self.ensure_client(from).map_err(|ClientLimit| JoinError::Limit)?;
        self.subs.join(group, from.port);
        self.ledger.take(uid, Kind::Subscriptions);
        if let Some(c) = self.clients.get_mut(&from.port) {
            c.groups.insert(group);
        }
        Ok(())
    }

    /// Unsubscribes `port` from `group`.
    pub(super) fn leave(&mut self, port: u32, group: u32) -> Result<(), LeaveError> {
        if !self.subs.leave(group, port) {
            return Err(LeaveError::NotSubscribed);
        }
        if let Some(c) = self.clients.get_mut(&port) {
            c.groups.remove(&group);
            c.notify_groups.remove(&group);
            let uid = c.uid;
            self.ledger.release(uid, Kind::Subscriptions);
        }
        self.maybe_drop_client(port);
        Ok(())
    }
}
