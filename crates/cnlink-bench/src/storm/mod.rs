//! The proc-event storm benchmark: a storm generator, listener runners and the loss/CPU accounting.
//!
//! See `src/bin/storm.rs` for the command line and the overall procedure.

pub(crate) mod count;
pub(crate) mod gen;
pub(crate) mod listener;
pub(crate) mod parse;
pub(crate) mod prepare;
pub(crate) mod procfs;
pub(crate) mod recording;
pub(crate) mod report;
pub(crate) mod sink;
