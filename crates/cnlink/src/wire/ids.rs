//! Connector ids (`struct cb_id`) and the well-known `CN_IDX_*`/`CN_VAL_*` constants of `<linux/connector.h>`.

use core::fmt;
use core::str::FromStr;

/// Process events (`cn_proc`).
pub const CN_IDX_PROC: u32 = 0x1;
/// Process events (`cn_proc`).
pub const CN_VAL_PROC: u32 = 0x1;
/// Reserved for CIFS.
pub const CN_IDX_CIFS: u32 = 0x2;
/// Reserved for CIFS.
pub const CN_VAL_CIFS: u32 = 0x1;
/// 1-Wire.
pub const CN_W1_IDX: u32 = 0x3;
/// 1-Wire.
pub const CN_W1_VAL: u32 = 0x1;
/// uvesafb and its `v86d` helper.
pub const CN_IDX_V86D: u32 = 0x4;
/// uvesafb and its `v86d` helper.
pub const CN_VAL_V86D_UVESAFB: u32 = 0x1;
/// BlackBoard (out of tree).
pub const CN_IDX_BB: u32 = 0x5;
/// Distributed storage (historical).
pub const CN_DST_IDX: u32 = 0x6;
/// Distributed storage (historical).
pub const CN_DST_VAL: u32 = 0x1;
/// Device-mapper userspace dirty log.
pub const CN_IDX_DM: u32 = 0x7;
/// Device-mapper userspace dirty log.
pub const CN_VAL_DM_USERSPACE_LOG: u32 = 0x1;
/// DRBD (older versions).
pub const CN_IDX_DRBD: u32 = 0x8;
/// DRBD (older versions).
pub const CN_VAL_DRBD: u32 = 0x1;
/// Hyper-V key/value pairs.
pub const CN_KVP_IDX: u32 = 0x9;
/// Hyper-V key/value pairs.
pub const CN_KVP_VAL: u32 = 0x1;
/// Hyper-V volume snapshots.
pub const CN_VSS_IDX: u32 = 0xA;
/// Hyper-V volume snapshots.
pub const CN_VSS_VAL: u32 = 0x1;
/// Highest well-known index plus one.
pub const CN_NETLINK_USERS: u32 = 11;
/// The connector core's own control id in 2.6.14–2.6.32 (removed with CVE-2010-0410); the bus owns it.
pub const CN_IDX_CONNECTOR: u32 = 0xffff_ffff;
/// The connector core's own control id in 2.6.14–2.6.32 (removed with CVE-2010-0410); the bus owns it.
pub const CN_VAL_CONNECTOR: u32 = 0xffff_ffff;
/// Largest `cn_msg` payload (header plus data) the kernel accepts from userspace.
pub const CONNECTOR_MAX_MSG_SIZE: usize = 16384;
/// Length of a callback name buffer, NUL included (`CN_CBQ_NAMELEN`).
pub const CN_CBQ_NAMELEN: usize = 32;

/// A connector id: the routing key of every message. Equal only when both halves are equal.
#[doc(alias = "cb_id")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CbId {
    /// Index; also the multicast group of the id's owner.
    pub idx: u32,
    /// Value within the index.
    pub val: u32,
}

impl CbId {
    /// The proc connector, `{1, 1}`.
    pub const PROC: CbId = CbId::new(CN_IDX_PROC, CN_VAL_PROC);
    /// The connector core's control id, `{0xffffffff, 0xffffffff}`.
    pub const CONNECTOR: CbId = CbId::new(CN_IDX_CONNECTOR, CN_VAL_CONNECTOR);

    /// Builds an id.
    pub const fn new(idx: u32, val: u32) -> Self {
        CbId { idx, val }
    }

    /// The name the kernel registers this id under, for the ids it knows.
    pub fn known_name(&self) -> Option<&'static str> {
        Some(match (self.idx, self.val) {
            (CN_IDX_PROC, CN_VAL_PROC) => "cn_proc",
            (CN_IDX_CIFS, CN_VAL_CIFS) => "cifs",
            (CN_W1_IDX, CN_W1_VAL) => "w1",
            (CN_IDX_V86D, CN_VAL_V86D_UVESAFB) => "uvesafb",
            (CN_DST_IDX, CN_DST_VAL) => "dst",
            (CN_IDX_DM, CN_VAL_DM_USERSPACE_LOG) => "dmlogusr",
            (CN_IDX_DRBD, CN_VAL_DRBD) => "drbd",
            (CN_KVP_IDX, CN_KVP_VAL) => "vmbus/hv_kvp",
            (CN_VSS_IDX, CN_VSS_VAL) => "vmbus/hv_vss",
            (CN_IDX_CONNECTOR, CN_VAL_CONNECTOR) => "connector",
            _ => return None,
        })
    }
}

impl fmt::Display for CbId {
    /// Formats as `idx.val` in decimal, the form `ucon` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.idx, self.val)
    }
}

/// Why a string is not a connector id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connector id {0:?}: expected IDX.VAL or IDX:VAL (decimal or 0x hex, -1 for 0xffffffff)")]
pub struct ParseCbIdError(String);

/// Parses a u32 in decimal, `0x` hex, or `-1` (as `0xffffffff`).
fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    if s == "-1" {
        return Some(u32::MAX);
    }
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl FromStr for CbId {
    type Err = ParseCbIdError;

    /// Accepts `idx.val` or `idx:val`, each half decimal, `0x` hex or `-1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, v) = s.split_once(['.', ':']).ok_or_else(|| ParseCbIdError(s.into()))?;
        match (parse_u32(i), parse_u32(v)) {
            (Some(idx), Some(val)) => Ok(CbId { idx, val }),
            _ => Err(ParseCbIdError(s.into())),
        }
    }
}

/// The netlink group bit for group number `group` (`1 << (group - 1)`), for `sockaddr_nl.nl_groups`.
///
/// `None` for group 0 and for groups above 32, which cannot be expressed in the 32-bit mask.
pub const fn group_mask(group: u32) -> Option<u32> {
    if group == 0 || group > 32 {
        None
    } else {
        Some(1 << (group - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        assert_eq!("1.1".parse::<CbId>().unwrap(), CbId::PROC);
        assert_eq!("0xe:0x456".parse::<CbId>().unwrap(), CbId::new(14, 0x456));
        assert_eq!("-1.-1".parse::<CbId>().unwrap(), CbId::CONNECTOR);
        assert!("1".parse::<CbId>().is_err());
        assert!("1.x".parse::<CbId>().is_err());
        assert_eq!(CbId::new(14, 0x456).to_string(), "14.1110");
    }

    #[test]
    fn masks() {
        assert_eq!(group_mask(1), Some(1));
        assert_eq!(group_mask(7), Some(0x40));
        assert_eq!(group_mask(32), Some(0x8000_0000));
        assert_eq!(group_mask(0), None);
        assert_eq!(group_mask(33), None);
    }

    #[test]
    fn names() {
        assert_eq!(CbId::PROC.known_name(), Some("cn_proc"));
        assert_eq!(CbId::new(7, 1).known_name(), Some("dmlogusr"));
        assert_eq!(CbId::new(14, 0x456).known_name(), None);
    }
}
