//! # cnlink-sink: process events off the host without loss
//!
//! Events go first to a local disk spool, then to NATS JetStream; a ledger counts everything made, lost and
//! delivered, and an auditor at the other end proves that what arrived is what was made, minus exactly what
//! the ledger reports.
//!
//! ## Layers
//!
//! ```text
//! spool::record  segment headers and checksummed records, byte by byte                    no IO
//! audit          per (host, boot): sequence continuity, duplicates, losses by stage         no IO
//! ledger         the ledger record (cumulative counts per host and boot)                    no IO
//! spool          segment files, recovery, the acked cursor, eviction, fsync policy          files
//! Sink           the event side: adds host_id, boot_id, sink_seq; writes ledger records     files
//! publish        the JetStream publisher on its own thread (feature "nats")                 network
//! collect        a durable pull consumer feeding a callback (feature "nats")                network
//! ```
//!
//! The record format, subjects, headers, ledger fields and audit rules are in `docs/sink.md`.
//!
//! ## Contract
//!
//! - [`Sink::submit`] never waits for the network; with the spool full, the oldest records are evicted and
//!   counted; with the disk full, the records are dropped and counted; neither is an error for the caller.
//! - Every record has a sink sequence number, unique and increasing for the host's spool; the server's
//!   deduplication (`Nats-Msg-Id: host:boot:seq`) removes the repeats that follow a reconnect or a restart.
//! - Every loss is in a counter the ledger carries; [`audit::Auditor`] checks the stream against it.
#![forbid(unsafe_code)]

pub mod audit;
#[cfg(feature = "nats")]
pub mod collect;
pub mod event;
pub mod ledger;
#[cfg(feature = "nats")]
pub mod publish;
mod sink;
pub mod spool;

pub use audit::{AuditReport, Auditor, BootReport};
pub use event::{subject_token, EventError};
pub use ledger::{LedgerRecord, UpstreamCounts};
pub use sink::{Sink, SinkConfig};
pub use spool::{FsyncPolicy, Identity, Recovery, SpoolError, SpoolHandle, SpoolOptions, SpoolStats};
