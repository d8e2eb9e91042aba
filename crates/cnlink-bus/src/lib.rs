//! # cnlink-bus: the kernel connector core, in userspace
//!
//! The kernel connector keeps a registry of callbacks by id `{idx, val}`, gives each user the group `idx`, routes
//! each incoming `cn_msg` to the callback registered for its id, and sends with `cn_netlink_send` (group 0: the
//! group of the id's owner; `ESRCH` when nobody listens). Until 2.6.32 it also told interested parties when ids
//! came and went, through control messages to its own id `{0xffffffff, 0xffffffff}`; that code was deleted as
//! CVE-2010-0410 because any user could make it store unlimited requests. This crate is that core, rebuilt for
//! userspace agents on `NETLINK_USERSOCK`, with the notifications back and every per-user holding bounded.
//!
//! ## Layers
//!
//! ```text
//! wire     bus control messages: cn_ctl_msg (byte-exact historical), bus ops, replies    no IO
//! core     the sans-IO state machine: registry, routing, notifications, limits         no IO, no clock
//! policy   the TOML policy: who may register and send to which ids
//! daemon   Bus: the core on a NETLINK_USERSOCK socket, with in-process callbacks on worker threads
//!          (or, for callbacks that never block, inline on the receive thread)
//! ops      the client's control ops, sans IO: op -> bytes, reply -> typed result, LIST paging, trust
//! client   BusClient: a remote agent or requester (blocking); tokio::AsyncBusClient (feature "tokio")
//! ```
//!
//! ## The bytes
//!
//! The wire format is the kernel connector's: `nlmsghdr` (type `NLMSG_DONE`) + `cn_msg` + data, sent to the bus
//! daemon's port id ([`DEFAULT_PORT`]) instead of the kernel's 0, on protocol 2 instead of 11. Control ops are
//! documented byte by byte in `docs/bus-protocol.md` and in [`wire`].
//!
//! ```text
//!  0 nlmsghdr  len type=3 flags seq pid                16 bytes
//! 16 cn_msg    idx val seq ack len flags               20 bytes
//! 36 data      len bytes; to {-1,-1}: a cn_ctl_msg or a bus op
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod core;
pub mod daemon;
pub mod ops;
pub mod policy;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod wire;

pub use client::{BusClient, ClientError, EchoProgress, CLIENT_RECV_BUFFER};
pub use core::{Action, BusCounters, Config, Core, Sender, Transmit};
pub use daemon::{Bus, BusHandle, BusOptions, Callback, Context};
pub use policy::Policy;

/// The bus daemon's well-known port id: `0x636E6C6B`, whose hex digits spell "cnlk".
pub const DEFAULT_PORT: u32 = 0x636E_6C6B;
