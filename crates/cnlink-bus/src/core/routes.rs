//! Reply routes: where the reply to a forwarded request goes, expiring in deadline order, with each requester
//! socket's and each user's routes in arrival order so that the oldest can make room for a newer request.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Instant;

use cnlink::wire::CbId;

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

/// Routes in arrival order per owner (a port or a uid). Entries of routes since removed or replaced stay until
/// they reach the front or the lane is compacted; `live` counts the others.
#[derive(Debug)]
struct Lanes<K> {
    lanes: HashMap<K, Lane>,
}

#[derive(Debug, Default)]
struct Lane {
    queue: VecDeque<(RouteKey, u64)>,
    live: usize,
}

impl<K> Default for Lanes<K> {
    fn default() -> Self {
        Lanes { lanes: HashMap::new() }
    }
}

/// Whether a queued `(key, generation)` still names a route in `map`.
fn current(map: &HashMap<RouteKey, Route>, key: &RouteKey, generation: u64) -> bool {
    map.get(key).is_some_and(|r| r.generation == generation)
}

impl<K: Hash + Eq + Copy> Lanes<K> {
    fn push(&mut self, owner: K, key: RouteKey, generation: u64) {
        let lane = self.lanes.entry(owner).or_default();
        lane.queue.push_back((key, generation));
        lane.live += 1;
    }

    /// One of `owner`'s routes is gone from `map`: forget the lane when it was the last, compact it when mostly
    /// stale.
    fn release(&mut self, owner: K, map: &HashMap<RouteKey, Route>) {
        let Some(lane) = self.lanes.get_mut(&owner) else { return };
        lane.live = lane.live.saturating_sub(1);
        if lane.live == 0 {
            self.lanes.remove(&owner);
        } else if lane.queue.len() > 2 * lane.live + 16 {
            lane.queue.retain(|(k, g)| current(map, k, *g));
        }
    }

    /// The key of `owner`'s oldest route in `map`.
    fn oldest(&mut self, owner: K, map: &HashMap<RouteKey, Route>) -> Option<RouteKey> {
        let lane = self.lanes.get_mut(&owner)?;
        while let Some(&(key, generation)) = lane.queue.front() {
            if current(map, &key, generation) {
                return Some(key);
            }
            lane.queue.pop_front();
        }
        None
    }

    /// The keys of `owner`'s routes in `map`.
    fn keys(&self, owner: K, map: &HashMap<RouteKey, Route>) -> Vec<RouteKey> {
        self.lanes
            .get(&owner)
            .map_or_else(Vec::new, |l| l.queue.iter().filter(|(k, g)| current(map, k, *g)).map(|(k, _)| *k).collect())
    }
}

/// The reply routes.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    map: HashMap<RouteKey, Route>,
    expiry: VecDeque<(Instant, RouteKey, u64)>,
    by_port: Lanes<u32>,
    by_uid: Lanes<u32>,
    generation: u64,
}

impl Routes {
    /// The route waiting for the reply `key`.
    pub(crate) fn get(&self, key: &RouteKey) -> Option<&Route> {
        self.map.get(key)
    }

    /// Records a route for a reply nobody else waits for (the caller removed any route with this key first).
    pub(crate) fn insert(&mut self, key: RouteKey, requester: u32, uid: u32, deadline: Instant) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(old) = self.map.insert(key, Route { requester, uid, deadline, generation }) {
            // Not expected (see above), but the lanes must stay counted right.
            self.by_port.release(old.requester, &self.map);
            self.by_uid.release(old.uid, &self.map);
        }
        self.expiry.push_back((deadline, key, generation));
        self.by_port.push(requester, key, generation);
        self.by_uid.push(uid, key, generation);
        if self.expiry.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.expiry.retain(|(_, k, g)| current(map, k, *g));
        }
    }

    /// Removes and returns the route for `key` (the reply came, or the route makes room).
    pub(crate) fn remove(&mut self, key: &RouteKey) -> Option<Route> {
        let r = self.map.remove(key)?;
        self.by_port.release(r.requester, &self.map);
        self.by_uid.release(r.uid, &self.map);
        Some(r)
    }

    /// The key of the oldest route back to `port`.
    pub(crate) fn oldest_of_port(&mut self, port: u32) -> Option<RouteKey> {
        self.by_port.oldest(port, &self.map)
    }

    /// The key of the oldest route of user `uid`.
    pub(crate) fn oldest_of_user(&mut self, uid: u32) -> Option<RouteKey> {
        self.by_uid.oldest(uid, &self.map)
    }

    /// Removes the routes whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Route> {
        let mut out = Vec::new();
        while let Some(&(deadline, key, generation)) = self.expiry.front() {
            if deadline > now {
                break;
            }
            self.expiry.pop_front();
            if current(&self.map, &key, generation) {
                out.extend(self.remove(&key));
            }
        }
        out
    }

    /// Removes the routes for replies from `id` (its owner went away).
    pub(crate) fn remove_id(&mut self, id: CbId) -> Vec<Route> {
        let keys: Vec<RouteKey> = self.map.keys().filter(|k| k.0 == id).copied().collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Removes the routes back to `port` (the requester went away).
    pub(crate) fn remove_requester(&mut self, port: u32) -> Vec<Route> {
        let keys = self.by_port.keys(port, &self.map);
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// The earliest deadline (possibly of a route already taken: waking early is harmless).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.expiry.front().map(|(d, _, _)| *d)
    }

    /// Routes waiting.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Entries kept in the arrival-order queues (live and stale), for the memory bound in tests.
    #[cfg(test)]
    fn queued(&self) -> usize {
        let lanes = |l: &Lanes<u32>| l.lanes.values().map(|l| l.queue.len()).sum::<usize>();
        self.expiry.len() + lanes(&self.by_port) + lanes(&self.by_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn routes_expire_and_compact() {
        let t0 = Instant::now();
        let mut r = Routes::default();
        let id = CbId::new(1, 2);
        for i in 0..1000 {
            r.insert((id, i, 1), 5, 0, t0 + Duration::from_secs(1));
            assert!(r.remove(&(id, i, 1)).is_some());
        }
        assert_eq!(r.queued(), r.expiry.len(), "a lane with no route is forgotten");
        assert!(r.expiry.len() <= 64 + 1, "taken routes do not pile up in the expiry queue");
        r.insert((id, 1, 1), 5, 0, t0 + Duration::from_secs(1));
        assert_eq!(r.remove(&(id, 1, 1)).map(|x| x.requester), Some(5));
        r.insert((id, 1, 1), 6, 0, t0 + Duration::from_secs(2));
        assert!(r.expire(t0 + Duration::from_secs(1)).is_empty(), "the replaced route's deadline is stale");
        assert_eq!(r.expire(t0 + Duration::from_secs(2)).len(), 1);
        assert_eq!((r.len(), r.queued()), (0, 0));
    }

    #[test]
    fn oldest_per_port_and_per_user() {
        let t0 = Instant::now();
        let mut r = Routes::default();
        let id = CbId::new(1, 2);
        // User 7 on ports 1 and 2, interleaved; user 8 on port 3.
        for seq in 0..10 {
            r.insert((id, seq, 0), 1 + seq % 2, 7, t0);
        }
        r.insert((id, 100, 0), 3, 8, t0);
        assert_eq!(r.oldest_of_port(2), Some((id, 1, 0)));
        assert_eq!(r.oldest_of_user(7), Some((id, 0, 0)));
        r.remove(&(id, 0, 0));
        r.remove(&(id, 1, 0));
        assert_eq!(r.oldest_of_user(7), Some((id, 2, 0)), "removed routes are skipped");
        assert_eq!(r.oldest_of_port(2), Some((id, 3, 0)));
        assert_eq!(r.oldest_of_port(9), None);
        let mut gone: Vec<u32> = r.remove_requester(1).iter().map(|x| x.requester).collect();
        gone.dedup();
        assert_eq!((gone, r.len()), (vec![1], 5));
        assert_eq!(r.oldest_of_user(7), Some((id, 3, 0)));
        // Many removals keep the queues compact.
        for seq in 1000..3000 {
            r.insert((id, seq, 0), 4, 9, t0);
            r.remove(&(id, seq, 0));
        }
        assert!(r.queued() < 2 * 64 + 3 * 32, "{}", r.queued());
    }
}
