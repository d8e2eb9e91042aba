//! # cnlink-capture: connector traffic in pcapng, readable by Wireshark
//!
//! A pcapng writer and reader written for one kind of traffic: netlink datagrams (the kernel connector's above all)
//! with the records cnlink needs to replay them (host, `/proc` snapshots, losses, exec observations, notes).
//!
//! ```text
//! a capture file                                        docs/capture-format.md has every byte
//!   Section Header Block     this machine's byte order; shb_userappl "cnlink 0.1.0", shb_os "Linux 6.18.0"
//!   Interface Description    one per netlink family: LINKTYPE_NETLINK (253), if_tsresol 9 (ns), if_name
//!   Custom Block (0xBAD)     PEN 32473 (placeholder), "CNLK" record: host id, boot id, kernel, CPUs, clocks
//!   Custom Block             snapshot of the process table (start, or rotation)
//!   Enhanced Packet Block    ts (ns since the epoch) | 16-byte cooked header (protocol 11) | datagram as received
//!   Custom Block             loss: seq gap / overrun / queue / socket drops, count, CPU, time
//!   ...
//! ```
//!
//! ## Layers
//!
//! ```text
//! codec    encode::Encoder, decode::Decoder, record::Record, cooked::CookedHeader   no IO, no clock, no unsafe
//! readers  Reader (a &[u8], an Iterator), StreamReader (any Read)                   stop at damage, with its offset
//! writers  CaptureWriter (any Write), RotatingWriter (files by size or age, at most N)
//! host     HostInfo::collect(): machine id, boot id, uname, CPUs, clocks
//! ```
//!
//! Contracts: no input makes a reader panic; every length is checked before use; unknown block types are yielded
//! as [`Block::Other`] and reading goes on; damage (a truncated tail, a bad length, a bad trailer, a field that does
//! not fit its block) ends the reading with a [`Damage`] naming the byte offset of the damaged block, after every
//! block before it. Writers take timestamps from the caller and never wait on anything but their `Write`; call
//! them from a writer thread, never from the thread that receives from the kernel.
//!
//! ```
//! use cnlink_capture::{Block, CaptureWriter, FileHeader, Loss, LossKind, Reader, Record};
//!
//! let mut w = CaptureWriter::new(Vec::new(), &FileHeader::netlink(&[11]))?;
//! w.write_datagram(1_000, 11, &[0u8; 76])?;
//! w.write_record(&Record::Loss(Loss {
//!     kind: LossKind::SeqGap,
//!     count: Some(3),
//!     lower_bound: false,
//!     cpu: Some(1),
//!     timestamp_ns: 2_000,
//!     before: None,
//! }))?;
//! let file = w.into_inner()?;
//! let kinds: Vec<&str> = Reader::new(&file)
//!     .map(|b| match b.unwrap() {
//!         Block::Section(_) => "section",
//!         Block::Interface { .. } => "interface",
//!         Block::Packet(_) => "packet",
//!         Block::Record(_) => "record",
//!         _ => "other",
//!     })
//!     .collect();
//! assert_eq!(kinds, ["section", "interface", "packet", "record"]);
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod cooked;
pub mod decode;
pub mod encode;
mod error;
mod host;
pub mod order;
pub mod pcapng;
mod reader;
pub mod record;
mod rotate;
mod writer;

pub use cooked::{CookedHeader, ARPHRD_NETLINK, NETLINK_CONNECTOR, NETLINK_USERSOCK};
pub use decode::{Block, Decoder, Packet, SectionHeader};
pub use encode::{Encoder, Interface, Section};
pub use error::{Damage, DamageKind, ReadError};
pub use host::{cpu_list_len, monotonic_to_wall, proc_event_timestamp};
pub use order::ByteOrder;
pub use reader::{Reader, StreamReader};
pub use record::{
    Clock, ExecObservation, HostInfo, Loss, LossKind, Note, Record, RecordError, Session, Snapshot, SnapshotReason,
    CNLINK_PEN,
};
pub use rotate::{BadLimit, RotateConfig, RotateLimit, RotatingWriter};
pub use writer::{CaptureWriter, FileHeader};
