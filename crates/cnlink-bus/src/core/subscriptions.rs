//! Group subscriptions: the bus fans out by unicast to the ports subscribed to a group.

use std::collections::HashMap;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
