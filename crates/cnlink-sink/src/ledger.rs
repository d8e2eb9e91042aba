//! The ledger record: cumulative counts of everything made, lost and delivered for one (host, boot), written
//! through the spool like an event every few seconds and at exit, on subject `PREFIX.HOST.proc.ledger`.
//!
//! ```json
//! {"host_id":"web01","boot_id":"6c1e...","sink_seq":9001,"type":"ledger","final":false,
//!  "time_unix_ms":1764300000000,"first_seq":1,"last_seq":9001,
//!  "kernel_lost":3,"kernel_lost_per_cpu":[0,3],"queue_lost":0,"filtered":12,
//!  "spool_evicted":0,"spool_evicted_unconfirmed":0,"spool_evicted_other_boot":0,"spool_torn":0,
//!  "write_dropped":0,
//!  "published":8990,"acked":8990,"acked_through":9000}
//! ```
//!
//! The record covers the sink sequence numbers `first_seq..=last_seq` of its boot (`last_seq` is its own
//! `sink_seq`). The counts are cumulative for the boot, across restarts of the process that kept the spool.

use serde::{Deserialize, Serialize};

/// The subject token of ledger records.
pub const LEDGER_TOKEN: &str = "ledger";

/// Losses before the sink, counted by the event source (the monitor) and passed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    /// Events the kernel dropped, per CPU (from the per-CPU sequence gaps).
    pub kernel_lost_per_cpu: Vec<u64>,
    /// Events the kernel dropped that no CPU is known for (the socket's drop counter, with the kernel-side
    /// filter on).
    pub kernel_lost_other: u64,
    /// Events dropped by the monitor's queue between its receive and writer threads.
    pub queue_lost: u64,
    /// Events the user's filter left out (not a loss; counted so the totals add up).
    pub filtered: u64,
}

/// One ledger record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// The host.
    pub host_id: String,
    /// The boot.
    pub boot_id: String,
    /// This record's own sink sequence number.
    pub sink_seq: u64,
    /// Always `"ledger"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// True for the record written at exit.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// When it was written (milliseconds since the Unix epoch).
    pub time_unix_ms: u64,
    /// The first sink sequence number of this boot.
    pub first_seq: u64,
    /// The last sink sequence number covered (this record's own).
    pub last_seq: u64,
    /// Kernel losses, all of them: the per-CPU ones and those no CPU is known for.
    pub kernel_lost: u64,
    /// Kernel losses per CPU (their sum is at most `kernel_lost`).
    pub kernel_lost_per_cpu: Vec<u64>,
    /// Losses in the monitor's queue.
    pub queue_lost: u64,
    /// Events left out by the filter.
    pub filtered: u64,
    /// Records of this boot evicted from the spool before they were acknowledged.
    pub spool_evicted: u64,
    /// Records of this boot evicted after a publish whose acknowledgement never came: each may or may not be
    /// in the stream.
    pub spool_evicted_unconfirmed: u64,
    /// Records of earlier boots evicted from this host's spool (they count against those boots).
    pub spool_evicted_other_boot: u64,
    /// Records lost to a torn or damaged spool record (each one sequence number).
    pub spool_torn: u64,
    /// Records dropped because the spool could not be written (a full disk); they have no sequence number.
    pub write_dropped: u64,
    /// Publishes sent for this boot's records (repeats included).
    pub published: u64,
    /// This boot's records acknowledged by the server.
    pub acked: u64,
    /// Every record up to this sequence number was acknowledged (or evicted) when the ledger was written.
    pub acked_through: u64,
}

impl LedgerRecord {
    /// Parses a ledger payload.
    pub fn parse(payload: &[u8]) -> Result<LedgerRecord, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// Spool losses certain to be missing from the stream (evicted before any publish, or torn): each is one
    /// missing sequence number.
    pub fn spool_losses_certain(&self) -> u64 {
        self.spool_evicted + self.spool_torn
    }

    /// The most spool losses that can be missing: the certain ones and the evictions after an unconfirmed
    /// publish.
    pub fn spool_losses_possible(&self) -> u64 {
        self.spool_losses_certain() + self.spool_evicted_unconfirmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_json_round_trips_with_the_documented_names() {
        let record = LedgerRecord {
            host_id: "h".into(),
            boot_id: "b".into(),
            sink_seq: 9,
            kind: LEDGER_TOKEN.into(),
            is_final: true,
            kernel_lost_per_cpu: vec![0, 3],
            kernel_lost: 3,
            ..Default::default()
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["type"], "ledger");
        assert_eq!(json["final"], true);
        assert_eq!(json["kernel_lost_per_cpu"], serde_json::json!([0, 3]));
        let back = LedgerRecord::parse(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(back, record);
    }
}
