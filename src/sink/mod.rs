//! `cnlink proc --sink`: every event to NATS JetStream through a disk spool, with a ledger of every loss
//! (`cnlink-sink` does the work; docs/sink.md). Here: the flags ([`args`], [`nats_flags`], shared with `cnlink
//! collect`), the sink's stage ([`stage`]) and the monitor's output that feeds it ([`output`]), and the loss
//! counts carried across restarts ([`upstream`]); and `cnlink collect`'s text, tree and ECS views of a fleet
//! ([`fleet`]).

pub(crate) mod args;
pub(crate) mod fleet;
pub(crate) mod nats_flags;
pub(crate) mod output;
pub(crate) mod stage;
pub(crate) mod upstream;
