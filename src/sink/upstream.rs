//! The monitor's loss counts carried across restarts of `cnlink proc` within one boot: a ledger's counts are
//! cumulative for the boot, but a new process counts from zero. Each ledger's counts are kept in the spool's
//! directory (`upstream.json`, replaced atomically) and added to the new process's at the next start.
//!
//! What a SIGKILL cuts short (losses after the last ledger record, events between the socket and the spool)
//! cannot be counted by anyone: `docs/sink.md` says so.

use std::path::{Path, PathBuf};

use cnlink_sink::UpstreamCounts;
use serde_json::json;

/// The counts of earlier processes of this boot, and where they are kept.
#[derive(Debug)]
pub(crate) struct UpstreamBase {
    path: PathBuf,
    boot_id: String,
    base: UpstreamCounts,
}

impl UpstreamBase {
    /// The counts an earlier process of boot `boot_id` left in `dir` (none when the file is missing, of
    /// another boot, or unreadable).
    pub(crate) fn load(dir: &Path, boot_id: &str) -> UpstreamBase {
        let path = dir.join("upstream.json");
        let base = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|v| v["boot_id"] == boot_id)
            .map(|v| UpstreamCounts {
                kernel_lost_per_cpu: v["kernel_lost_per_cpu"]
                    .as_array()
                    .map(|a| a.iter().map(|n| n.as_u64().unwrap_or(0)).collect())
                    .unwrap_or_default(),
                kernel_lost_other: v["kernel_lost_other"].as_u64().unwrap_or(0),
                queue_lost: v["queue_lost"].as_u64().unwrap_or(0),
                filtered: v["filtered"].as_u64().unwrap_or(0),
            })
            .unwrap_or_default();
        UpstreamBase { path, boot_id: boot_id.to_owned(), base }
    }

    /// This process's counts plus the earlier processes'.
    pub(crate) fn add(&self, now: &UpstreamCounts) -> UpstreamCounts {
        let b = &self.base;
        let cpus = b.kernel_lost_per_cpu.len().max(now.kernel_lost_per_cpu.len());
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        UpstreamCounts {
            kernel_lost_per_cpu: (0..cpus)
                .map(|i| at(&b.kernel_lost_per_cpu, i) + at(&now.kernel_lost_per_cpu, i))
                .collect(),
            kernel_lost_other: b.kernel_lost_other + now.kernel_lost_other,
            queue_lost: b.queue_lost + now.queue_lost,
            filtered: b.filtered + now.filtered,
        }
    }

    /// Keeps `total` (what [`UpstreamBase::add`] gave) for the next process; a failure only loses the carry.
    pub(crate) fn save(&self, total: &UpstreamCounts) {
        let text = json!({
            "boot_id": self.boot_id,
            "kernel_lost_per_cpu": total.kernel_lost_per_cpu,
            "kernel_lost_other": total.kernel_lost_other,
            "queue_lost": total.queue_lost,
            "filtered": total.filtered,
        })
        .to_string();
        let tmp = self.path.with_extension("json.tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_carry_over_within_a_boot_only() {
        let dir = std::env::temp_dir().join(format!("cnlink-upstream-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = UpstreamBase::load(&dir, "boot-a");
        let counts = UpstreamCounts { kernel_lost_per_cpu: vec![0, 3], queue_lost: 2, ..Default::default() };
        assert_eq!(first.add(&counts), counts);
        first.save(&counts);
        let again = UpstreamBase::load(&dir, "boot-a");
        let more = UpstreamCounts { kernel_lost_per_cpu: vec![1], kernel_lost_other: 4, ..Default::default() };
        let total = again.add(&more);
        assert_eq!(total.kernel_lost_per_cpu, [1, 3]);
        assert_eq!((total.kernel_lost_other, total.queue_lost), (4, 2));
        assert_eq!(UpstreamBase::load(&dir, "boot-b").add(&more), more);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
