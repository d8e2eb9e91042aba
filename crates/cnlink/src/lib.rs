//! # cnlink: the Linux kernel connector
#![deny(unsafe_code)]

mod connector;
mod diagnose;
pub mod engine;
mod error;
pub mod proc;
pub mod socket;
pub mod wire;

#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(test)]
mod testing;

pub use connector::Connector;
pub use engine::{Credentials, MatchRule, OwnedMsg, Trust};
pub use error::Error;
