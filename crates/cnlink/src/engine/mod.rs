//! Sans-IO engines: protocol logic with no IO and no clock.
//!
//! Bytes and times go in, decisions come out; the blocking and async drivers only move bytes between these and
//! a [`crate::socket::Socket`]. That keeps the logic in one place and lets tests drive it with made-up datagrams
//! and simulated time.
//!
//! - [`Subscriber`]: the proc connector subscription (requests, acks, filter fallback, resync, loss reports),
//!   built on the pure [`ProcDecoder`] (datagrams to [`ProcItem`]s) and [`SeqTracker`] (per-CPU gaps).
//! - [`ClientCore`]: the request/reply client of any connector id.

pub mod connector;
pub mod cpus;
pub mod loss;
pub mod proc_stream;
pub mod reply_matcher;
pub mod subscriber;

pub use connector::{
    ClientCore, ClientCounters, ClientItem, Credentials, OwnedMsg, PendingRequest, RequestError, Trust,
    DEFAULT_QUEUE_LIMIT,
};
pub use cpus::CpuSet;
pub use loss::{Loss, SeqObservation, SeqTracker};
pub use proc_stream::{Event, ProcCounters, ProcDecoder, ProcItem};
pub use reply_matcher::{MatchRule, ReplyMatcher, RequestId};
pub use subscriber::{
    ConfigError, Failure, KernelRelease, Path, State, Subscriber, SubscriberConfig, SubscriberEvent, Transmit,
};
