//! # cnlink: the Linux kernel connector
#![forbid(unsafe_code)]

pub mod wire;
