//! What a reader reports when a file is damaged, and where.

use core::fmt;

/// Where a file is damaged and how. Everything before `offset` was read; nothing after it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("damaged capture at byte {offset}: {kind}")]
pub struct Damage {
    /// Offset of the first byte of the damaged block, from the start of the input.
    pub offset: u64,
    /// What is wrong.
    pub kind: DamageKind,
}

/// What is wrong with a damaged block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageKind {
    /// The input ends inside the block (or is empty): the tail of a file cut short by a crash or a copy.
    Truncated {
        /// Bytes the block needs (its header's length, or 12 for a header).
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// The block's length is below 12, not a multiple of 4, or above the 1 GiB limit.
    BlockLength {
        /// The length read.
        length: u32,
    },
    /// The length at the end of the block differs from the one at its start.
    TrailerMismatch {
        /// Length at the start.
        header: u32,
        /// Length at the end.
        trailer: u32,
    },
    /// The input does not start with a Section Header Block.
    NotPcapng {
        /// The block type found.
        block_type: u32,
    },
    /// A Section Header Block whose byte-order magic is neither order of `0x1A2B3C4D`.
    ByteOrderMagic {
        /// The magic read.
        magic: u32,
    },
    /// A section of a major version other than 1.
    Version {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A packet refers to an interface not described in its section.
    UnknownInterface {
        /// The interface id.
        interface_id: u32,
    },
    /// A field inside the block disagrees with the block's length.
    Malformed {
        /// The block type.
        block_type: u32,
        /// Which field.
        what: &'static str,
    },
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DamageKind::Truncated { needed, available } => {
                write!(f, "truncated: the block needs {needed} bytes, {available} are left")
            }
            DamageKind::BlockLength { length } => write!(f, "bad block length {length}"),
            DamageKind::TrailerMismatch { header, trailer } => {
                write!(f, "block length {header} at the start but {trailer} in the trailer")
            }
            DamageKind::NotPcapng { block_type } => {
                write!(f, "not a pcapng file: first block type {block_type:#010x}, not a section header")
            }
            DamageKind::ByteOrderMagic { magic } => write!(f, "bad byte-order magic {magic:#010x}"),
            DamageKind::Version { major, minor } => write!(f, "unsupported pcapng version {major}.{minor}"),
            DamageKind::UnknownInterface { interface_id } => {
                write!(f, "packet for interface {interface_id}, which the section does not describe")
            }
            DamageKind::Malformed { block_type, what } => write!(f, "malformed block {block_type:#x}: {what}"),
        }
    }
}

/// An error from a reader over [`std::io::Read`]: damage, or the reader's own IO error.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The data is damaged.
    #[error(transparent)]
    Damage(#[from] Damage),
    /// Reading failed.
    #[error("reading the capture: {0}")]
    Io(#[from] std::io::Error),
}
