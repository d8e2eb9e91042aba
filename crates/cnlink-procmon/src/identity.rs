//! Process identity that survives pid reuse and is unique across hosts and boots: [`EntityId`].
//!
//! An entity id is the first 16 bytes of the SHA-256 of a short text, written as 32 lowercase hex digits:
//!
//! | source | text hashed |
//! |---|---|
//! | [`EntityIdSource::Stat`] | `v1:stat:{host_id}:{boot_id}:{pid}:{start_ticks}` |
//! | [`EntityIdSource::ForkEvent`] | `v1:fork:{host_id}:{boot_id}:{cpu}:{seq}:{timestamp_ns}:{pid}` |
//! | [`EntityIdSource::Event`] | `v1:event:{host_id}:{boot_id}:{cpu}:{seq}:{timestamp_ns}:{pid}` |
//!
//! `pid` is the pid in the initial pid namespace, in decimal; `start_ticks` is field 22 of `/proc/PID/stat`;
//! `cpu`, `seq` and `timestamp_ns` are the proc connector message's CPU, per-CPU sequence number and
//! timestamp; `host_id` and `boot_id` are as [`HostIdentity`] read them. The `stat` form is the same whether
//! the process was seen forking or found in the start-up snapshot, so anyone can recompute it:
//!
//! ```text
//! printf 'v1:stat:%s:%s:%d:%d' "$(cat /etc/machine-id)" "$(cat /proc/sys/kernel/random/boot_id)" \
//!     $PID "$(cut -d' ' -f22 /proc/$PID/stat)" | sha256sum | cut -c1-32
//! ```
//!
//! (`cut -f22` is right only while the process name has no space.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How an [`EntityId`] was derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityIdSource {
    /// From the start time in `/proc/PID/stat`: stable, recomputable.
    Stat,
    /// From the fork event: the child was gone before its start time could be read (or its start time would
    /// have repeated the id of the pid's previous process, which only forced reuse within one tick can do).
    ForkEvent,
    /// From the first event seen of a process that was neither in the snapshot nor seen forking, and whose
    /// `/proc` entry was already gone.
    Event,
}

impl EntityIdSource {
    /// `stat`, `fork_event` or `event`.
    pub fn name(self) -> &'static str {
        match self {
            EntityIdSource::Stat => "stat",
            EntityIdSource::ForkEvent => "fork_event",
            EntityIdSource::Event => "event",
        }
    }
}

/// A 128-bit process identity, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityId(pub [u8; 16]);

impl EntityId {
    fn hash(text: fmt::Arguments<'_>) -> EntityId {
        let mut h = Sha256::new();
        h.update(text.to_string().as_bytes());
        let d = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        EntityId(id)
    }

    /// The id of the process `pid` that started `start_ticks` clock ticks after boot.
    pub fn from_stat(host: &HostIdentity, pid: i32, start_ticks: u64) -> EntityId {
        EntityId::hash(format_args!("v1:stat:{}:{}:{pid}:{start_ticks}", host.host_id, host.boot_id))
    }

    /// The id of the child `pid` created by the fork event `(cpu, seq, timestamp_ns)`.
    pub fn from_fork_event(host: &HostIdentity, pid: i32, cpu: u32, seq: u32, timestamp_ns: u64) -> EntityId {
        EntityId::hash(format_args!("v1:fork:{}:{}:{cpu}:{seq}:{timestamp_ns}:{pid}", host.host_id, host.boot_id))
    }

    /// The id of a process first met in the event `(cpu, seq, timestamp_ns)`.
    pub fn from_event(host: &HostIdentity, pid: i32, cpu: u32, seq: u32, timestamp_ns: u64) -> EntityId {
        EntityId::hash(format_args!("v1:event:{}:{}:{cpu}:{seq}:{timestamp_ns}:{pid}", host.host_id, host.boot_id))
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({self})")
    }
}

/// A string that is not 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an entity id is 32 hex digits")]
pub struct BadEntityId;

impl FromStr for EntityId {
    type Err = BadEntityId;

    fn from_str(s: &str) -> Result<Self, BadEntityId> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return Err(BadEntityId);
        }
        let mut id = [0u8; 16];
        for (i, pair) in b.chunks(2).enumerate() {
            let hex = std::str::from_utf8(pair).map_err(|_| BadEntityId)?;
            id[i] = u8::from_str_radix(hex, 16).map_err(|_| BadEntityId)?;
        }
        Ok(EntityId(id))
    }
}

impl Serialize for EntityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where the host id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostIdSource {
    /// `/etc/machine-id`.
    MachineId,
    /// `/var/lib/dbus/machine-id` (systems without systemd).
    DbusMachineId,
    /// `/sys/class/dmi/id/product_uuid` (the firmware's; readable by root).
    ProductUuid,
    /// None found: the host id is empty. Ids stay unique, since the boot id is random per boot, but a host
    /// cannot be recognised across boots.
    None,
    /// Given by the caller (a recording, a test).
    Given,
}

/// The host and boot a process lives on, read once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIdentity {
    /// The machine id (32 hex digits), or empty.
    pub host_id: String,
    /// Where `host_id` came from.
    pub host_id_source: HostIdSource,
    /// `/proc/sys/kernel/random/boot_id`: a random UUID per boot.
    pub boot_id: String,
}

/// The boot id could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the boot id from /proc/sys/kernel/random/boot_id: {0}")]
pub struct IdentityError(#[source] pub std::io::Error);

impl HostIdentity {
    /// Identity given by the caller.
    pub fn new(host_id: &str, boot_id: &str) -> HostIdentity {
        HostIdentity { host_id: host_id.to_owned(), host_id_source: HostIdSource::Given, boot_id: boot_id.to_owned() }
    }

    /// Reads the host id (`/etc/machine-id`, else `/var/lib/dbus/machine-id`, else
    /// `/sys/class/dmi/id/product_uuid`, else empty) and the boot id.
    pub fn read() -> Result<HostIdentity, IdentityError> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_err(IdentityError)?;
        let candidates = [
            ("/etc/machine-id", HostIdSource::MachineId),
            ("/var/lib/dbus/machine-id", HostIdSource::DbusMachineId),
            ("/sys/class/dmi/id/product_uuid", HostIdSource::ProductUuid),
        ];
        let (host_id, host_id_source) = candidates
            .iter()
            .find_map(|(path, src)| {
                let s = std::fs::read_to_string(path).ok()?;
                let s = s.trim();
                (!s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'))
                    .then(|| (s.to_ascii_lowercase(), *src))
            })
            .unwrap_or((String::new(), HostIdSource::None));
        Ok(HostIdentity { host_id, host_id_source, boot_id: boot_id.trim().to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_length_hex_and_recomputable() {
        let host = HostIdentity::new("3d1219c7c4c5404aaa1f6d2a48adfda4", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5");
        let id = EntityId::from_stat(&host, 4242, 123456);
        // printf 'v1:stat:3d1219c7c4c5404aaa1f6d2a48adfda4:ba9c04d6-63df-4a14-bbdd-20583d11a1b5:4242:123456' \
        //   | sha256sum | cut -c1-32
        assert_eq!(id.to_string(), "3fcdb3d6f1e91a672c25129710a33de5");
        assert_eq!(id.to_string().parse::<EntityId>(), Ok(id));
        assert_ne!(EntityId::from_stat(&host, 4242, 123457), id);
        assert_ne!(EntityId::from_fork_event(&host, 4242, 0, 1, 2), EntityId::from_event(&host, 4242, 0, 1, 2));
        assert!("xyz".parse::<EntityId>().is_err());
        assert!("zz".repeat(16).parse::<EntityId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<EntityId>(&json).unwrap(), id);
    }

    #[test]
    fn reads_this_host() {
        let h = HostIdentity::read().expect("boot id");
        assert_eq!(h.boot_id.len(), 36);
    }
}
