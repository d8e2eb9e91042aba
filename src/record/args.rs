//! The options every recording command shares: rotation and the number of files kept.

use std::path::Path;

use cnlink_capture::{RotateConfig, RotateLimit};

/// Rotation options.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct RecordArgs {
    /// Start a new file at this size (100M, 1G, 512K) or age (30s, 10min, 2h, 1d); the files are then
    /// FILE-000001.EXT, FILE-000002.EXT, ..., each replayable alone.
    #[arg(long, value_name = "SIZE|DURATION")]
    pub(crate) rotate: Option<RotateLimit>,
    /// Keep at most this many files (the newest), deleting older ones (with --rotate).
    #[arg(long, value_name = "N", requires = "rotate", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_files: Option<u64>,
}

impl RecordArgs {
    /// Where and how to write a recording named `path`.
    pub(crate) fn config(&self, path: &Path) -> RotateConfig {
        RotateConfig {
            limit: self.rotate,
            max_files: self.max_files.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            ..RotateConfig::single(path)
        }
    }
}
