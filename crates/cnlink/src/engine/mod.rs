//! Sans-IO engines: protocol logic with no IO and no clock.
//!
//! Bytes and times go in, decisions come out; the blocking and async drivers only move bytes between these and
//! a [`crate::socket::Socket`]. That keeps the logic in one place and lets tests drive it with made-up datagrams
//! and simulated time.

pub mod connector;
pub mod loss;
pub mod proc_stream;
pub mod reply_matcher;

pub use connector::{
    ClientCore, ClientCounters, ClientItem, Credentials, OwnedMsg, PendingRequest, RequestError, Trust,
    DEFAULT_QUEUE_LIMIT,
};
pub use loss::{SeqObservation, SeqTracker};
pub use proc_stream::{Event, ProcDecoder, ProcItem, Stats};
pub use reply_matcher::{MatchRule, ReplyMatcher, RequestId};
