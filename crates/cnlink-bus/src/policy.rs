//! Who may register and send to which ids: a TOML policy file, parsed here, applied by the core.
//!
//! ```toml
//! # Root may register any free id. Every other user U may register the ids of its own idx, 0x80000000 + U
//! # (user_idx; true by default), and the ids a [[register]] entry grants it. [[send]] limits who may send
//! # messages to which ids: without entries, everyone may send to every registered id.
//! user_idx = true
//!
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
//! Registration is first come, first served among those allowed: whoever holds an id receives every request sent
//! to it. So by default no user but root can take an id another user's agent could need: well-known ids (w1's
//! `{3, 1}`, `{14, 0x456}`, ...) are root's unless granted, and each user's own idx is its alone.
//! [`RECOMMENDED_POLICY`] is the file to start from.
//!
//! Unregistering is never configurable: only the user who registered an id, or root, may unregister it. A SEND
//! to a group of a message carrying an id is allowed to root, to the id's registrant, and otherwise only where a
//! `[[send]]` rule names the user and the id (an empty list grants nothing there), so nobody forges another
//! user's group messages or the bus's notifications.

use cnlink::wire::CbId;

use crate::core::Limits;

/// The first of the users' own idx values: user `U` (not root) owns idx `USER_IDX_BASE + U`.
pub const USER_IDX_BASE: u32 = 0x8000_0000;

/// The policy this crate recommends for a bus shared by several users, as a TOML file (`cnlink bus --policy`).
pub const RECOMMENDED_POLICY: &str = include_str!("../recommended-policy.toml");

/// The idx user `uid` owns ([`USER_IDX_BASE`]` + uid`); `None` for root and for uids from `0x7fffffff` up, whose
/// idx would reach the core's own `0xffffffff`.
pub fn user_idx(uid: u32) -> Option<u32> {
    (uid != 0 && uid < u32::MAX - USER_IDX_BASE).then(|| USER_IDX_BASE + uid)
}

/// One grant: these users may act on ids in these ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Whether every user but root may register the ids of its own idx ([`user_idx`]); true by default.
    #[serde(default = "yes")]
    pub user_idx: bool,
    /// Who may register which ids besides root and [`Policy::user_idx`].
    #[serde(default)]
    pub register: Vec<Rule>,
    /// Who may send to which ids; empty means everyone may send to any id.
    #[serde(default)]
    pub send: Vec<Rule>,
    /// Per-user bounds.
    #[serde(default)]
    pub limits: Limits,
}

fn yes() -> bool {
    true
}

impl Default for Policy {
    /// Root registers any free id, every other user the ids of its own idx; everyone may send to every id; the
    /// default limits.
    fn default() -> Self {
        Policy { user_idx: true, register: Vec::new(), send: Vec::new(), limits: Limits::default() }
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid bus policy: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// The policy of a machine whose users all trust each other: everyone may register any free id (one
    /// `[[register]]` entry with no fields). Not for a bus shared by users who do not.
    pub fn open() -> Policy {
        Policy { register: vec![Rule::default()], ..Policy::default() }
    }

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

    /// Whether `uid` may register `id`: root always may; another user where its own idx or a `[[register]]`
    /// rule allows.
    pub fn may_register(&self, uid: u32, id: CbId) -> bool {
        uid == 0 || (self.user_idx && user_idx(uid) == Some(id.idx)) || self.register.iter().any(|r| r.grants(uid, id))
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
    fn default_keeps_ids_for_root_and_their_users() {
        let p = Policy::default();
        assert!(p.may_register(0, CbId::new(3, 1)), "root");
        assert!(!p.may_register(1000, CbId::new(3, 1)), "a well-known id is root's");
        assert!(!p.may_register(1000, CbId::new(5, 5)));
        assert!(p.may_register(1000, CbId::new(0x8000_03e8, 7)), "uid 1000's own idx");
        assert!(!p.may_register(1001, CbId::new(0x8000_03e8, 7)), "not another user's");
        assert!(p.may_send(65534, CbId::new(1, 1)), "everyone may send");
        assert_eq!((user_idx(0), user_idx(65534)), (None, Some(0x8000_fffe)));
        assert_eq!((user_idx(0x7fff_fffe), user_idx(0x7fff_ffff), user_idx(u32::MAX)), (Some(0xffff_fffe), None, None));
        assert_eq!(Policy::from_toml("").unwrap(), p, "an empty file is the default");
        assert!(!Policy { user_idx: false, ..p }.may_register(1000, CbId::new(0x8000_03e8, 7)));
        assert!(Policy::open().may_register(1000, CbId::new(5, 5)));
        assert_eq!(Policy::from_toml("[[register]]\n").unwrap(), Policy::open());
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
        assert!(Policy::from_toml("user_idx = 1\n").is_err());
    }

    #[test]
    fn the_recommended_policy_parses_and_keeps_the_defaults_guarantees() {
        let p = Policy::from_toml(RECOMMENDED_POLICY).unwrap();
        assert!(p.user_idx);
        assert!(!p.may_register(1000, CbId::new(3, 1)));
        assert!(!p.may_register(1000, CbId::new(0x8000_03e9, 1)));
        assert!(p.may_register(1000, CbId::new(0x8000_03e8, 1)));
        assert!(p.limits.routes_per_user >= 1024, "room for one-way traffic and requests");
    }
}
