//! # cnlink: the Linux kernel connector
//!
//! The kernel connector (`NETLINK_CONNECTOR`) carries messages between the kernel and userspace, each a
//! `struct cn_msg` addressed to an id `{idx, val}`. Its best-known user is the proc connector, which reports every
//! fork, exec, exit, uid/gid/sid change, ptrace, comm change and core dump on the machine. This crate speaks it
//! exactly as the kernel does, never panics on bad bytes, and says exactly how many events were lost.
//!
//! ## Process events in a dozen lines
//!
//! ```no_run
//! use cnlink::proc::{Loss, ProcEvents, ProcItem, ProcOptions};
//! use cnlink::wire::{EventData, EventMask};
//!
//! // Exits only: on Linux 6.6+ the kernel filters; on older kernels the same filter runs here.
//! let opts = ProcOptions { events: EventMask::EXIT, ..Default::default() };
//! for item in ProcEvents::subscribe(opts)? {
//!     match item? {
//!         ProcItem::Event(ev) => {
//!             if let EventData::Exit { process_pid, .. } = ev.data {
//!                 println!("{process_pid} exited: {}", ev.data.exit_status().unwrap());
//!             }
//!         }
//!         ProcItem::Lost(Loss::Exact(n)) => eprintln!("lost {n} events"),
//!         ProcItem::Lost(Loss::AtLeast(n)) => eprintln!("lost at least {n} events"),
//!         ProcItem::Lost(Loss::Unknown) => eprintln!("lost events, how many is unknown"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), cnlink::Error>(())
//! ```
//!
//! Losses are exact when the accounting covers every CPU (see [`engine::Loss`]); a receive-buffer overrun is an
//! item ([`proc::ProcItem::Overrun`]), never an error. [`proc::ProcEvents::set_tap`] shows a recorder every
//! datagram before it is decoded.
//!
//! With the `tokio` feature, [`tokio::ProcStream`] is the same as an async `Stream` (it never blocks the
//! executor), and [`tokio::AsyncConnector`] the async request/reply client. Any other id is reached with [`Connector`]:
//! [`Connector::request`] sends a message and waits for the reply its [`MatchRule`] recognises (the documents'
//! rule, same `seq` and `ack + 1`, by default); [`Connector::recv`] gives the rest as [`ClientItem`]s, an
//! overrun included. Both clients are thin drivers over [`engine::ClientCore`].
//!
//! ## The bytes
//!
//! ```text
//! offset  size  field                   (native byte order throughout; nothing is byte-swapped)
//!      0     4  nlmsg_len               16 + 20 + len; old kernels padded it to a multiple of 4
//!      4     2  nlmsg_type              NLMSG_DONE (3) on every connector message
//!      6     2  nlmsg_flags             0
//!      8     4  nlmsg_seq               a copy of cn_msg.seq
//!     12     4  nlmsg_pid               sender port id: 0 is the kernel
//!     16     4  cn_msg.id.idx           CN_IDX_PROC = 1 ...; also the multicast group of the id's owner
//!     20     4  cn_msg.id.val
//!     24     4  cn_msg.seq              proc connector: the sending CPU's message counter
//!     28     4  cn_msg.ack              replies: request ack + 1
//!     32     2  cn_msg.len              data bytes (u16)
//!     34     2  cn_msg.flags
//!     36   len  data                    proc connector: struct proc_event (40 bytes, see wire::proc_event)
//!               zero padding to a multiple of 4
//! ```
//!
//! ## Layers
//!
//! ```text
//! wire     bytes <-> views and reprs                                    no IO, no unsafe
//! engine   the proc subscription (Subscriber), proc decoding and per-CPU   no IO, no clock, no unsafe
//!          loss accounting, reply matching and the request/reply client core
//! socket   netlink sockets: the only module with syscalls and unsafe
//! drivers  proc::ProcEvents, Connector (blocking); tokio::* (feature "tokio"): loops that move bytes
//!          between the sockets and the engines
//! ```
//!
//! Contracts: views check lengths once at construction and no accessor panics after; unknown event kinds are
//! data ([`wire::EventData::Unknown`]); by default only messages from the kernel (port 0) are accepted on the
//! connector, others are dropped and counted; an overrun is an item in the stream, never a fatal error.
#![deny(unsafe_code)]

mod connector;
mod diagnose;
pub mod engine;
mod error;
mod host;
pub mod proc;
pub mod socket;
pub mod wire;

#[cfg(feature = "tokio")]
pub mod tokio;

#[cfg(test)]
mod testing;

pub use connector::Connector;
pub use engine::{ClientCounters, ClientItem, Credentials, MatchRule, OwnedMsg, Trust};
pub use error::Error;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
