//! The registry of callbacks by id (the kernel's `cn_queue_dev` callback list).
//!
//! Ids are unique; each entry's group is its `idx`; registration order is kept for listing, as
//! `/proc/net/connector` shows it.

use std::collections::{BTreeMap, HashMap};

use cnlink::wire::CbId;

/// Who answers for a registered id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The core itself (`{0xffffffff, 0xffffffff}`).
    Core,
    /// A callback in the process that runs the core.
    Local,
    /// A remote agent at this port id.
    Remote(u32),
}

/// One registered id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id.
    pub id: CbId,
    /// Its name (at most 31 bytes, like `CN_CBQ_NAMELEN`).
    pub name: String,
    /// Its group: always `id.idx`.
    pub group: u32,
    /// Who answers.
    pub owner: Owner,
    /// The uid that registered it (0 for the core and local callbacks).
    pub uid: u32,
    order: u64,
}

/// The registered ids.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    entries: HashMap<CbId, Entry>,
    /// The ids by registration order, so that listing a page needs no sort.
    by_order: BTreeMap<u64, CbId>,
    next_order: u64,
}

/// Cuts `name` to 31 bytes on a character boundary (the kernel's snprintf into 32 bytes).
pub(crate) fn cut_name(name: &str) -> String {
    let mut end = name.len().min(31);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

impl Registry {
    /// Adds `id`; false if it is already registered.
    pub(crate) fn insert(&mut self, id: CbId, name: &str, owner: Owner, uid: u32) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        let order = self.next_order;
        self.next_order += 1;
        self.entries.insert(id, Entry { id, name: cut_name(name), group: id.idx, owner, uid, order });
        self.by_order.insert(order, id);
        true
    }

    /// Removes `id`, returning its entry.
    pub(crate) fn remove(&mut self, id: CbId) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.by_order.remove(&e.order);
        Some(e)
    }

    /// The entry for `id`.
    pub(crate) fn get(&self, id: CbId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries in registration order.
    pub(crate) fn ordered(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.by_order.values().filter_map(|id| self.entries.get(id))
    }
}

/// `/proc/net/connector` text for `entries` (spec §4.7): a header, then `%-15s %u:%u` per entry.
pub fn proc_text<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> String {
    let mut s = String::from("Name            ID\n");
    for e in entries {
        s.push_str(&format!("{:<15} {}:{}\n", e.name, e.id.idx, e.id.val));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ordered_grouped() {
        let mut r = Registry::default();
        assert!(r.insert(CbId::new(14, 0x456), "cn_test", Owner::Local, 0));
        assert!(r.insert(CbId::new(3, 1), "w1", Owner::Remote(9), 1000));
        assert!(!r.insert(CbId::new(14, 0x456), "again", Owner::Local, 0));
        assert_eq!(r.get(CbId::new(3, 1)).unwrap().group, 3);
        let ids: Vec<_> = r.ordered().map(|e| e.id).collect();
        assert_eq!(ids, vec![CbId::new(14, 0x456), CbId::new(3, 1)]);
        assert_eq!(proc_text(r.ordered()), "Name            ID\ncn_test         14:1110\nw1              3:1\n");
        assert_eq!(cut_name(&"é".repeat(20)).len(), 30, "cut on a character boundary");
    }
}
