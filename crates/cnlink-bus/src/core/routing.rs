//! Group subscriptions (the bus fans out by unicast) and the routes that take replies back to requesters.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use cnlink::wire::CbId;

/// Ports subscribed to each group.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    by_group: HashMap<u32, Vec<u32>>,
    count: usize,
}

impl Subscriptions {
    /// Subscribes `port` to `group`; false if it already was.
    pub(crate) fn join(&mut self, group: u32, port: u32) -> bool {
        let members = self.by_group.entry(group).or_default();
        match members.binary_search(&port) {
            Ok(_) => false,
            Err(i) => {
                members.insert(i, port);
                self.count += 1;
                true
            }
        }
    }

    /// Unsubscribes `port` from `group`; false if it was not subscribed.
    pub(crate) fn leave(&mut self, group: u32, port: u32) -> bool {
        let Some(members) = self.by_group.get_mut(&group) else { return false };
        let Ok(i) = members.binary_search(&port) else { return false };
        members.remove(i);
        if members.is_empty() {
            self.by_group.remove(&group);
        }
        self.count -= 1;
        true
    }

    /// Whether `port` is subscribed to `group`.
    pub(crate) fn is_member(&self, group: u32, port: u32) -> bool {
        self.by_group.get(&group).is_some_and(|m| m.binary_search(&port).is_ok())
    }

    /// The ports subscribed to `group`, ascending.
    pub(crate) fn members(&self, group: u32) -> &[u32] {
        self.by_group.get(&group).map_or(&[], |m| m.as_slice())
    }

    /// Number of (group, port) subscriptions.
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// Where the reply to a forwarded request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) requester: u32,
    pub(crate) uid: u32,
    pub(crate) deadline: Instant,
    generation: u64,
}

/// The expected reply: the id, the request's `seq` and the request's `ack + 1` (the documents' rule).
pub(crate) type RouteKey = (CbId, u32, u32);

/// Reply routes, expiring in deadline order.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    map: HashMap<RouteKey, Route>,
    order: VecDeque<(Instant, RouteKey, u64)>,
    generation: u64,
}

impl Routes {
    /// Records a route; returns the one it replaced (same id, seq and ack from another requester).
    pub(crate) fn insert(&mut self, key: RouteKey, requester: u32, uid: u32, deadline: Instant) -> Option<Route> {
        self.generation += 1;
        let generation = self.generation;
        // Into the map first: the compaction below keeps only the entries of routes in the map, this one included.
        let old = self.map.insert(key, Route { requester, uid, deadline, generation });
        self.order.push_back((deadline, key, generation));
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|(_, k, g)| map.get(k).is_some_and(|r| r.generation == *g));
        }
        old
    }

    /// Takes the route for a reply.
    pub(crate) fn take(&mut self, key: &RouteKey) -> Option<Route> {
        self.map.remove(key)
    }

    /// Removes the routes whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Route> {
        let mut out = Vec::new();
        while let Some(&(deadline, key, generation)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|r| r.generation == generation) {
                out.extend(self.map.remove(&key));
            }
        }
        out
    }

    /// Removes the routes for replies from `id` (its owner went away).
    pub(crate) fn remove_id(&mut self, id: CbId) -> Vec<Route> {
        let keys: Vec<RouteKey> = self.map.keys().filter(|k| k.0 == id).copied().collect();
        keys.iter().filter_map(|k| self.map.remove(k)).collect()
    }

    /// Removes the routes back to `port` (the requester went away).
    pub(crate) fn remove_requester(&mut self, port: u32) -> Vec<Route> {
        let keys: Vec<RouteKey> = self.map.iter().filter(|(_, r)| r.requester == port).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| self.map.remove(k)).collect()
    }

    /// The earliest deadline (possibly of a route already taken: waking early is harmless).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(d, _, _)| *d)
    }

    /// Routes waiting.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn subscriptions() {
        let mut s = Subscriptions::default();
        assert!(s.join(u32::MAX, 7));
        assert!(!s.join(u32::MAX, 7));
        assert!(s.join(u32::MAX, 3));
        assert_eq!(s.members(u32::MAX), &[3, 7]);
        assert!(s.leave(u32::MAX, 7));
        assert!(!s.leave(u32::MAX, 7));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn routes_expire_and_compact() {
        let t0 = Instant::now();
        let mut r = Routes::default();
        let id = CbId::new(1, 2);
        for i in 0..1000 {
            r.insert((id, i, 1), 5, 0, t0 + Duration::from_secs(1));
            assert!(r.take(&(id, i, 1)).is_some());
        }
        assert!(r.order.len() <= 64 + 1, "taken routes do not pile up in the expiry queue");
        r.insert((id, 1, 1), 5, 0, t0 + Duration::from_secs(1));
        assert_eq!(r.insert((id, 1, 1), 6, 0, t0 + Duration::from_secs(2)).map(|x| x.requester), Some(5));
        assert!(r.expire(t0 + Duration::from_secs(1)).is_empty(), "the replaced route's deadline is stale");
        assert_eq!(r.expire(t0 + Duration::from_secs(2)).len(), 1);
        assert_eq!(r.len(), 0);
    }
}
