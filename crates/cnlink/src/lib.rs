//! # cnlink: the Linux kernel connector
#![deny(unsafe_code)]

pub mod engine;
pub mod socket;
pub mod wire;

#[cfg(test)]
mod testing;
