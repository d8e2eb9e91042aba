//! The block decoder: frames blocks and decodes them, tracking the section's byte order and interfaces. No IO;
//! [`crate::Reader`] and [`crate::StreamReader`] drive it.
//!
//! Every length is checked against the block before it is used; any disagreement is a [`DamageKind`], never a
//! panic.

use crate::cooked::CookedHeader;
use crate::encode::{Interface, Section};
use crate::error::DamageKind;
use crate::order::ByteOrder;
use crate::pcapng::*;
use crate::record::{Record, CNLINK_PEN};

/// One decoded block.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Block<'a> {
    /// A Section Header Block: a new section starts, with no interfaces yet.
    Section(SectionHeader),
    /// An Interface Description Block; ids count from 0 in each section.
    Interface {
        /// The interface id packets refer to.
        id: u32,
        /// The description.
        interface: Interface,
    },
    /// An Enhanced Packet Block.
    Packet(Packet<'a>),
    /// A Custom Block holding a cnlink record.
    Record(Record),
    /// A Custom Block of another PEN, or of cnlink's PEN without cnlink's magic.
    Custom {
        /// Its Private Enterprise Number.
        pen: u32,
        /// Whether rewriters may copy it (type 0xBAD rather than 0x40000BAD).
        copy: bool,
        /// The custom data and options, as stored.
        data: &'a [u8],
    },
    /// A block of a type this crate does not decode (simple packet, name resolution, statistics, ...).
    Other {
        /// The block type.
        block_type: u32,
        /// The body, between the length and the trailer.
        body: &'a [u8],
    },
}

/// A decoded Section Header Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionHeader {
    /// The section's byte order.
    pub byte_order: ByteOrder,
    /// Major version (1).
    pub major: u16,
    /// Minor version (0; 2 is read as 0).
    pub minor: u16,
    /// Its options.
    pub options: Section,
}

/// A decoded Enhanced Packet Block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The interface it was captured on.
    pub interface_id: u32,
    /// That interface's link type.
    pub link_type: u16,
    /// Nanoseconds since the epoch.
    pub timestamp_ns: u64,
    /// The packet's length before it was cut to the snaplen (cooked header included).
    pub original_len: u32,
    /// The cooked header, for `LINKTYPE_NETLINK` packets of at least 16 bytes.
    pub cooked: Option<CookedHeader>,
    /// The datagram after the cooked header (the whole frame for other link types).
    pub data: &'a [u8],
}

impl Packet<'_> {
    /// The netlink family, for netlink packets.
    pub fn protocol(&self) -> Option<u16> {
        self.cooked.map(|c| c.protocol)
    }

    /// Whether the stored data is the whole packet.
    pub fn is_complete(&self) -> bool {
        let header = if self.cooked.is_some() { crate::cooked::COOKED_HDRLEN } else { 0 };
        header + self.data.len() >= self.original_len as usize
    }
}

/// How much of a block the decoder has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Give at least this many bytes from the block's start.
    Need(usize),
    /// The whole block is this long.
    Block(u32),
}

#[derive(Debug, Clone, Copy)]
struct InterfaceState {
    link_type: u16,
    tsresol: u8,
    tsoffset: i64,
}

/// Decodes a pcapng byte stream block by block.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    order: Option<ByteOrder>,
    interfaces: Vec<InterfaceState>,
}

fn malformed(block_type: u32, what: &'static str) -> DamageKind {
    DamageKind::Malformed { block_type, what }
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The current section's byte order, once a Section Header Block was decoded.
    pub fn byte_order(&self) -> Option<ByteOrder> {
        self.order
    }

    /// Frames the block that starts with `head`: how many bytes it needs, or its length.
    pub fn frame(&self, head: &[u8]) -> Result<Frame, DamageKind> {
        if head.len() < 8 {
            return Ok(Frame::Need(8));
        }
        let raw_type = ByteOrder::Little.u32_at(head, 0).unwrap_or(0);
        let order = if raw_type == BLOCK_SHB {
            if head.len() < 12 {
                return Ok(Frame::Need(12));
            }
            match ByteOrder::Little.u32_at(head, 8) {
                Some(BYTE_ORDER_MAGIC) => ByteOrder::Little,
                Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => ByteOrder::Big,
                m => return Err(DamageKind::ByteOrderMagic { magic: m.unwrap_or(0) }),
            }
        } else {
            match self.order {
                Some(o) => o,
                None => return Err(DamageKind::NotPcapng { block_type: raw_type }),
            }
        };
        let length = order.u32_at(head, 4).unwrap_or(0);
        if length < MIN_BLOCK_LEN || length % 4 != 0 || length > MAX_BLOCK_LEN {
            return Err(DamageKind::BlockLength { length });
        }
        Ok(Frame::Block(length))
    }

    /// Decodes one whole block, exactly as long as [`Decoder::frame`] said.
    pub fn decode<'a>(&mut self, block: &'a [u8]) -> Result<Block<'a>, DamageKind> {
        let Frame::Block(length) = self.frame(block)? else {
            return Err(DamageKind::Truncated { needed: 12, available: block.len() as u64 });
        };
        if block.len() != length as usize {
            return Err(DamageKind::Truncated { needed: u64::from(length), available: block.len() as u64 });
        }
        let raw_type = ByteOrder::Little.u32_at(block, 0).unwrap_or(0);
        if raw_type == BLOCK_SHB {
            return self.section(block);
        }
        let order = self.order.unwrap_or(ByteOrder::NATIVE);
        let block_type = order.u32_at(block, 0).unwrap_or(0);
        let trailer = order.u32_at(block, block.len() - 4).unwrap_or(0);
        if trailer != length {
            return Err(DamageKind::TrailerMismatch { header: length, trailer });
        }
        let body = &block[8..block.len() - 4];
        match block_type {
            BLOCK_IDB => self.interface(order, body),
            BLOCK_EPB => self.packet(order, body),
            BLOCK_CUSTOM_COPY | BLOCK_CUSTOM_NO_COPY => {
                let pen = order.u32_at(body, 0).ok_or(malformed(block_type, "no room for the PEN"))?;
                let data = &body[4..];
                if pen == CNLINK_PEN {
                    match Record::parse(data) {
                        Ok(Some(r)) => return Ok(Block::Record(r)),
                        Ok(None) => {}
                        Err(e) => return Err(malformed(block_type, e.0)),
                    }
                }
                Ok(Block::Custom { pen, copy: block_type == BLOCK_CUSTOM_COPY, data })
            }
            _ => Ok(Block::Other { block_type, body }),
        }
    }

    fn section<'a>(&mut self, block: &[u8]) -> Result<Block<'a>, DamageKind> {
        let order = match ByteOrder::Little.u32_at(block, 8) {
            Some(BYTE_ORDER_MAGIC) => ByteOrder::Little,
            _ => ByteOrder::Big,
        };
        let length = block.len() as u32;
        let trailer = order.u32_at(block, block.len() - 4).unwrap_or(0);
        if trailer != length {
            return Err(DamageKind::TrailerMismatch { header: length, trailer });
        }
        if block.len() < 28 {
            return Err(malformed(BLOCK_SHB, "shorter than a section header"));
        }
        let major = order.u16_at(block, 12).unwrap_or(0);
        let minor = order.u16_at(block, 14).unwrap_or(0);
        if major != 1 {
            return Err(DamageKind::Version { major, minor });
        }
        let mut options = Section::default();
        for_each_option(order, BLOCK_SHB, &block[24..block.len() - 4], |code, value| {
            let text = || Some(String::from_utf8_lossy(value).into_owned());
            match code {
                SHB_HARDWARE => options.hardware = text(),
                SHB_OS => options.os = text(),
                SHB_USERAPPL => options.userappl = text(),
                _ => {}
            }
        })?;
        self.order = Some(order);
        self.interfaces.clear();
        Ok(Block::Section(SectionHeader {
            byte_order: order,
            major,
            minor: if minor == 2 { 0 } else { minor },
            options,
        }))
    }

    fn interface<'a>(&mut self, order: ByteOrder, body: &[u8]) -> Result<Block<'a>, DamageKind> {
        let short = malformed(BLOCK_IDB, "shorter than an interface description");
        let link_type = order.u16_at(body, 0).ok_or(short)?;
        let snaplen = order.u32_at(body, 4).ok_or(short)?;
        let mut i =
            Interface { link_type, snaplen, tsresol: TSRESOL_DEFAULT, tsoffset: 0, name: None, description: None };
        for_each_option(order, BLOCK_IDB, &body[8..], |code, value| match (code, value.len()) {
            (IF_NAME, _) => i.name = Some(String::from_utf8_lossy(value).into_owned()),
            (IF_DESCRIPTION, _) => i.description = Some(String::from_utf8_lossy(value).into_owned()),
            (IF_TSRESOL, 1) => i.tsresol = value[0],
            (IF_TSOFFSET, 8) => i.tsoffset = order.u64_at(value, 0).unwrap_or(0) as i64,
            _ => {}
        })?;
        let id = self.interfaces.len() as u32;
        self.interfaces.push(InterfaceState { link_type, tsresol: i.tsresol, tsoffset: i.tsoffset });
        Ok(Block::Interface { id, interface: i })
    }

    fn packet<'a>(&self, order: ByteOrder, body: &'a [u8]) -> Result<Block<'a>, DamageKind> {
        let short = malformed(BLOCK_EPB, "shorter than an enhanced packet header");
        let interface_id = order.u32_at(body, 0).ok_or(short)?;
        let ticks =
            u64::from(order.u32_at(body, 4).ok_or(short)?) << 32 | u64::from(order.u32_at(body, 8).ok_or(short)?);
        let captured = order.u32_at(body, 12).ok_or(short)? as usize;
        let original_len = order.u32_at(body, 16).ok_or(short)?;
        let frame = body.get(20..20 + captured).ok_or(malformed(BLOCK_EPB, "captured length past the block"))?;
        let iface = *self.interfaces.get(interface_id as usize).ok_or(DamageKind::UnknownInterface { interface_id })?;
        let offset_ns = i128::from(iface.tsoffset) * 1_000_000_000;
        let ns = i128::from(ticks_to_nanos(ticks, iface.tsresol)) + offset_ns;
        let timestamp_ns = ns.clamp(0, i128::from(u64::MAX)) as u64;
        let cooked = if iface.link_type == LINKTYPE_NETLINK { CookedHeader::parse(frame) } else { None };
        let data = if cooked.is_some() { &frame[crate::cooked::COOKED_HDRLEN..] } else { frame };
        Ok(Block::Packet(Packet { interface_id, link_type: iface.link_type, timestamp_ns, original_len, cooked, data }))
    }
}

/// Calls `f(code, value)` for each option until `opt_endofopt` or the end of `opts`.
fn for_each_option(
    order: ByteOrder,
    block_type: u32,
    mut opts: &[u8],
    mut f: impl FnMut(u16, &[u8]),
) -> Result<(), DamageKind> {
    while opts.len() >= 4 {
        let code = order.u16_at(opts, 0).unwrap_or(0);
        let len = order.u16_at(opts, 2).unwrap_or(0) as usize;
        if code == OPT_ENDOFOPT {
            return Ok(());
        }
        let value = opts.get(4..4 + len).ok_or(malformed(block_type, "option past the end of the block"))?;
        f(code, value);
        opts = opts.get(4 + pad4(len)..).unwrap_or(&[]);
    }
    Ok(())
}
