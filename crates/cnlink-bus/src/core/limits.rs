//! Per-user bounds on everything a client can make the core hold, and the usage counted against them.
//!
//! The original notification code (CVE-2010-0410) stored every request it was sent; here each user (uid) has a
//! quota of registrations, subscriptions, notification requests, reply routes and clients. Reaching one is an
//! error for that request only (`EDQUOT`; `E2BIG` for too many ranges in one request), and it is counted; reply
//! routes are the exception: a user at its limit has its oldest route dropped to make room (see the core's data
//! path), so that messages that expect no reply are never refused.

use std::collections::HashMap;

/// The bounds, per user. Defaults suit a desktop or a small server; a policy file may change them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Ids one user may hold registered.
    pub ids_per_user: usize,
    /// Group subscriptions (port, group) one user may hold.
    pub subscriptions_per_user: usize,
    /// Notification requests one user may have stored.
    pub notify_per_user: usize,
    /// Ranges (idx plus val) in one notification request.
    pub ranges_per_request: usize,
    /// Requests one user may have waiting for a reply through the bus; a newer request drops the oldest route
    /// (the same socket's first) instead of being refused.
    pub routes_per_user: usize,
    /// Client sockets (ports holding any state) one user may have.
    pub clients_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ids_per_user: 256,
            subscriptions_per_user: 256,
            notify_per_user: 64,
            ranges_per_request: 256,
            routes_per_user: 1024,
            clients_per_user: 64,
        }
    }
}

/// What is held on behalf of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Registered ids.
    pub ids: usize,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Stored notification requests.
    pub notify: usize,
    /// Reply routes waiting.
    pub routes: usize,
    /// Clients with state.
    pub clients: usize,
}

impl Usage {
    fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Which quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Ids,
    Subscriptions,
    Notify,
    Routes,
    Clients,
}

/// Usage per uid; users with nothing held take no memory.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    users: HashMap<u32, Usage>,
}

impl Usage {
    fn held(&self, kind: Kind) -> usize {
        match kind {
            Kind::Ids => self.ids,
            Kind::Subscriptions => self.subscriptions,
            Kind::Notify => self.notify,
            Kind::Routes => self.routes,
            Kind::Clients => self.clients,
        }
    }
}

impl Ledger {
    fn slot(u: &mut Usage, kind: Kind) -> &mut usize {
        match kind {
            Kind::Ids => &mut u.ids,
            Kind::Subscriptions => &mut u.subscriptions,
            Kind::Notify => &mut u.notify,
            Kind::Routes => &mut u.routes,
            Kind::Clients => &mut u.clients,
        }
    }

    fn limit(limits: &Limits, kind: Kind) -> usize {
        match kind {
            Kind::Ids => limits.ids_per_user,
            Kind::Subscriptions => limits.subscriptions_per_user,
            Kind::Notify => limits.notify_per_user,
            Kind::Routes => limits.routes_per_user,
            Kind::Clients => limits.clients_per_user,
        }
    }

    /// Whether `uid` may take one more of `kind`.
    pub(crate) fn has_room(&self, limits: &Limits, uid: u32, kind: Kind) -> bool {
        let held = self.users.get(&uid).map_or(0, |u| u.held(kind));
        held < Self::limit(limits, kind)
    }

    /// Counts one more of `kind` for `uid`.
    pub(crate) fn take(&mut self, uid: u32, kind: Kind) {
        *Self::slot(self.users.entry(uid).or_default(), kind) += 1;
    }

    /// Gives one of `kind` back.
    pub(crate) fn release(&mut self, uid: u32, kind: Kind) {
        if let Some(u) = self.users.get_mut(&uid) {
            let s = Self::slot(u, kind);
            *s = s.saturating_sub(1);
            if u.is_zero() {
                self.users.remove(&uid);
            }
        }
    }

    /// What `uid` holds.
    pub(crate) fn usage(&self, uid: u32) -> Usage {
        self.users.get(&uid).copied().unwrap_or_default()
    }

    /// Users holding anything.
    pub(crate) fn users(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_release() {
        let limits = Limits { ids_per_user: 2, ..Limits::default() };
        let mut l = Ledger::default();
        assert!(l.has_room(&limits, 5, Kind::Ids));
        l.take(5, Kind::Ids);
        l.take(5, Kind::Ids);
        assert!(!l.has_room(&limits, 5, Kind::Ids));
        assert!(l.has_room(&limits, 6, Kind::Ids), "quotas are per user");
        l.release(5, Kind::Ids);
        l.release(5, Kind::Ids);
        l.release(5, Kind::Ids);
        assert_eq!(l.usage(5), Usage::default());
        assert_eq!(l.users(), 0, "a user holding nothing takes no memory");
    }
}
