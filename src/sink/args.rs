//! `cnlink proc`'s sink flags (`--sink URL` and `--sink-*`, the `[proc.sink]` table of the configuration file),
//! and the library configurations they make.

use std::path::PathBuf;
use std::time::Duration;

use cnlink_sink::publish::{PublishConfig, StreamConfig};
use cnlink_sink::{FsyncPolicy, Identity, SinkConfig, SpoolOptions};

use super::nats_flags::SinkNatsFlags;
use crate::cmd::{parse_duration, parse_size};

/// Where the spool lives unless `--sink-spool` says otherwise (the unit's `StateDirectory=cnlink`).
pub(crate) const DEFAULT_SPOOL: &str = "/var/lib/cnlink/spool";

/// Publishing every event to NATS JetStream (docs/sink.md).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(next_help_heading = "Sink: every event to NATS JetStream, through a disk spool (docs/sink.md)")]
pub(crate) struct SinkArgs {
    /// Publish every event to JetStream at these servers (nats://HOST:PORT[,HOST:PORT...], or tls://) instead
    /// of printing it: first to a disk spool, then to the stream, acknowledged, with a ledger of every loss.
    #[arg(long = "sink", visible_alias = "sink-url", value_name = "URLS")]
    pub(crate) sink_url: Option<String>,
    /// The stream (created if missing, with file storage and subjects PREFIX.>).
    #[arg(long = "sink-stream", value_name = "NAME", default_value = "CNLINK")]
    sink_stream: String,
    /// The subject prefix: events go to PREFIX.HOST.proc.EVENT.
    #[arg(long = "sink-prefix", value_name = "PREFIX", default_value = "cnlink")]
    sink_prefix: String,
    /// The spool directory (one cnlink per directory); events wait here until the server acknowledges them.
    #[arg(long = "sink-spool", value_name = "DIR", default_value = DEFAULT_SPOOL)]
    sink_spool: PathBuf,
    /// The most the spool holds (e.g. 1G); past it the oldest records are dropped, and counted.
    #[arg(long = "sink-spool-max", value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    sink_spool_max: usize,
    /// The size of one spool segment file (the unit of eviction).
    #[arg(long = "sink-spool-segment", value_name = "BYTES", default_value = "64M", value_parser = parse_size)]
    sink_spool_segment: usize,
    /// When the spool is synced to disk: always, never (the OS decides), or every N ms (e.g. 1000).
    #[arg(long = "sink-fsync", value_name = "POLICY", default_value = "1000")]
    sink_fsync: FsyncPolicy,
    /// Publishes waiting for their acknowledgement at most.
    #[arg(long = "sink-window", value_name = "N", default_value_t = 256)]
    sink_window: usize,
    /// How long one publish may wait for its acknowledgement before publishing again from the spool.
    #[arg(long = "sink-ack-timeout", value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    sink_ack_timeout: Duration,
    /// How often a ledger record (every count of events made, lost and delivered) is published.
    #[arg(long = "sink-ledger-interval", value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    sink_ledger_interval: Duration,
    /// At exit, how long to wait for the spool to drain (what is left is published at the next start).
    #[arg(long = "sink-drain-timeout", value_name = "DURATION", default_value = "10s",
          value_parser = parse_duration)]
    pub(crate) sink_drain_timeout: Duration,
    /// The host id in events and subjects (default: /etc/machine-id).
    #[arg(long = "sink-host-id", value_name = "ID")]
    pub(crate) sink_host_id: Option<String>,
    /// A stream created by cnlink keeps at most this many bytes (e.g. 10G; default: no limit).
    #[arg(long = "sink-max-bytes", value_name = "BYTES", value_parser = parse_size)]
    sink_max_bytes: Option<usize>,
    /// A stream created by cnlink keeps at most this many messages (default: no limit).
    #[arg(long = "sink-max-msgs", value_name = "N")]
    sink_max_msgs: Option<u64>,
    /// A stream created by cnlink keeps messages at most this long (e.g. 7d is 168h; default: forever).
    #[arg(long = "sink-max-age", value_name = "DURATION", value_parser = parse_duration)]
    sink_max_age: Option<Duration>,
    /// The server drops a repeated message id within this window: keep it longer than the longest outage.
    #[arg(long = "sink-dup-window", value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    sink_dup_window: Duration,
    /// Replicas of a stream created by cnlink (3 in a three-node cluster).
    #[arg(long = "sink-replicas", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=5))]
    sink_replicas: u8,
    #[command(flatten)]
    sink_nats: SinkNatsFlags,
}

impl SinkArgs {
    /// Every option at its default (no `--sink`).
    fn defaults() -> SinkArgs {
        use clap::{Args, FromArgMatches};
        let matches = SinkArgs::augment_args(clap::Command::new("sink")).get_matches_from(["sink"]);
        SinkArgs::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// An error when a `--sink-*` option is given without `--sink` (it would do nothing).
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.sink_url.is_none() && *self != SinkArgs::defaults() {
            anyhow::bail!("the --sink-* options need --sink URLS (`url` in the configuration file's [proc.sink])");
        }
        Ok(())
    }

    /// The spool's configuration for this host and boot.
    pub(crate) fn sink_config(&self, identity: Identity) -> SinkConfig {
        let mut config = SinkConfig::new(identity, &self.sink_spool);
        config.spool = SpoolOptions {
            max_bytes: self.sink_spool_max as u64,
            segment_bytes: self.sink_spool_segment as u64,
            fsync: self.sink_fsync,
            ..SpoolOptions::new(&self.sink_spool)
        };
        config.ledger_interval = self.sink_ledger_interval;
        config
    }

    /// The publisher's configuration; `None` without `--sink`.
    pub(crate) fn publish_config(&self) -> anyhow::Result<Option<PublishConfig>> {
        let Some(url) = &self.sink_url else { return Ok(None) };
        let connect = self.sink_nats.access().connect_config(url).map_err(|e| anyhow::anyhow!("--sink: {e}"))?;
        let mut config = PublishConfig::new(connect);
        config.stream = StreamConfig {
            name: self.sink_stream.clone(),
            subject_prefix: self.sink_prefix.clone(),
            max_bytes: self.sink_max_bytes.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            max_msgs: self.sink_max_msgs.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            max_age: self.sink_max_age.unwrap_or(Duration::ZERO),
            duplicate_window: self.sink_dup_window,
            replicas: usize::from(self.sink_replicas),
        };
        config.window = self.sink_window.max(1);
        config.ack_timeout = self.sink_ack_timeout;
        Ok(Some(config))
    }
}
