//! Who may register and send to which ids: a TOML policy file, parsed here, applied by the core.
//!
//! ```toml
//! # Without [[register]] entries anyone may register any id nobody holds; with some, a user other than root
//! # may register only ids an entry grants to them. [[send]] works the same way for messages to ids.
//! [[register]]
//! uids = [1000, 1001]        # omitted: every user
//! idx = [100, 199]           # inclusive; omitted: every idx
//! val = [0, 4294967295]      # inclusive; omitted: every val
//!
//! [[send]]
//! idx = [100, 199]
//!
//! [limits]                   # per-user bounds (see Limits); omitted fields keep their defaults
//! ids_per_user = 16
//! ```
//!
//! Unregistering is never configurable: only the user who registered an id, or root, may unregister it. A SEND
//! to a group of a message carrying an id is allowed to root, to the id's registrant, and otherwise only where a
//! `[[send]]` rule names the user and the id (an empty list grants nothing there), so nobody forges another
//! user's group messages or the bus's notifications.

use cnlink::wire::CbId;

use crate::core::Limits;

/// One grant: these users may act on ids in these ranges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The users; `None` means every user.
    #[serde(default)]
    pub uids: Option<Vec<u32>>,
    /// Inclusive idx range; `None` means every idx.
    #[serde(default)]
    pub idx: Option<[u32; 2]>,
    /// Inclusive val range; `None` means every val.
    #[serde(default)]
    pub val: Option<[u32; 2]>,
}

impl Rule {
    fn grants(&self, uid: u32, id: CbId) -> bool {
        let within = |r: &Option<[u32; 2]>, x: u32| r.is_none_or(|[lo, hi]| lo <= x && x <= hi);
        self.uids.as_ref().is_none_or(|u| u.contains(&uid)) && within(&self.idx, id.idx) && within(&self.val, id.val)
    }
}

/// The policy: grants for registering and sending, and the per-user limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Who may register which ids; empty means everyone may register any free id.
    #[serde(default)]
    pub register: Vec<Rule>,
    /// Who may send to which ids; empty means everyone may send to any id.
    #[serde(default)]
    pub send: Vec<Rule>,
    /// Per-user bounds.
    #[serde(default)]
    pub limits: Limits,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid bus policy: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// Parses a policy from TOML text.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        for r in p.register.iter().chain(&p.send) {
            for [lo, hi] in [r.idx, r.val].into_iter().flatten() {
                if lo > hi {
                    return Err(PolicyError(format!("range [{lo}, {hi}] is empty")));
                }
            }
        }
        Ok(p)
    }

    /// Whether `uid` may register `id` (root always may).
    pub fn may_register(&self, uid: u32, id: CbId) -> bool {
        uid == 0 || self.register.is_empty() || self.register.iter().any(|r| r.grants(uid, id))
    }

    /// Whether `uid` may send to `id` (root always may).
    pub fn may_send(&self, uid: u32, id: CbId) -> bool {
        uid == 0 || self.send.is_empty() || self.send.iter().any(|r| r.grants(uid, id))
    }

    /// Whether a `[[send]]` rule names `uid` and `id` explicitly (an empty list grants nothing here): what lets
    /// a user SEND to a group messages carrying an id it did not register.
    pub fn grants_send(&self, uid: u32, id: CbId) -> bool {
        self.send.iter().any(|r| r.grants(uid, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_allows_everyone() {
        let p = Policy::default();
        assert!(p.may_register(1000, CbId::new(5, 5)));
        assert!(p.may_send(65534, CbId::new(1, 1)));
    }

    #[test]
    fn grants_from_toml() {
        let p = Policy::from_toml(
            "[[register]]\nuids = [1000]\nidx = [100, 199]\n[[send]]\nidx = [100, 100]\n[limits]\nids_per_user = 3\n",
        )
        .unwrap();
        assert!(p.may_register(1000, CbId::new(150, 7)));
        assert!(!p.may_register(1000, CbId::new(200, 7)));
        assert!(!p.may_register(1001, CbId::new(150, 7)));
        assert!(p.may_register(0, CbId::new(1, 1)), "root");
        assert!(p.may_send(42, CbId::new(100, 9)));
        assert!(!p.may_send(42, CbId::new(101, 9)));
        assert_eq!(p.limits.ids_per_user, 3);
        assert_eq!(p.limits.notify_per_user, Limits::default().notify_per_user);
    }

    #[test]
    fn rejects_bad_files() {
        assert!(Policy::from_toml("[[register]]\nidx = [5, 4]\n").is_err());
        assert!(Policy::from_toml("[[register]]\nuid = 5\n").is_err(), "unknown field");
        assert!(Policy::from_toml("[limits]\nids_per_user = -1\n").is_err());
    }
}
