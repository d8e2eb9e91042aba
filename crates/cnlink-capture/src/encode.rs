//! Block encoders: each appends one whole pcapng block to a `Vec<u8>`. No IO.

use crate::cooked::{CookedHeader, COOKED_HDRLEN};
use crate::order::ByteOrder;
use crate::pcapng::*;
use crate::record::{Record, CNLINK_PEN};

/// The options of a Section Header Block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// `shb_hardware`: e.g. the machine architecture.
    pub hardware: Option<String>,
    /// `shb_os`: e.g. `Linux 6.18.0`.
    pub os: Option<String>,
    /// `shb_userappl`: e.g. `cnlink 0.1.0`.
    pub userappl: Option<String>,
}

/// An Interface Description Block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The link type ([`LINKTYPE_NETLINK`] for cnlink's captures).
    pub link_type: u16,
    /// The largest packet stored whole (0: no limit).
    pub snaplen: u32,
    /// `if_tsresol`: 10^-n seconds per tick, or 2^-n with the high bit set.
    pub tsresol: u8,
    /// `if_tsoffset`: seconds added to every timestamp.
    pub tsoffset: i64,
    /// `if_name`.
    pub name: Option<String>,
    /// `if_description`.
    pub description: Option<String>,
}

/// The snaplen cnlink writes: libpcap's and Wireshark's largest (256 KiB), above any netlink datagram.
pub const SNAPLEN: u32 = 262_144;

impl Interface {
    /// A `LINKTYPE_NETLINK` interface for netlink family `protocol`, timestamps in nanoseconds.
    pub fn netlink(protocol: u16) -> Interface {
        let family = match protocol {
            0 => "NETLINK_ROUTE".to_string(),
            2 => "NETLINK_USERSOCK".to_string(),
            11 => "NETLINK_CONNECTOR".to_string(),
            n => format!("netlink family {n}"),
        };
        Interface {
            link_type: LINKTYPE_NETLINK,
            snaplen: SNAPLEN,
            tsresol: TSRESOL_NANOS,
            tsoffset: 0,
            name: Some(format!("cnlink-{protocol}")),
            description: Some(format!("datagrams received by cnlink on a {family} ({protocol}) socket")),
        }
    }
}

/// Encodes blocks in one byte order (that of the section it writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    order: ByteOrder,
}

/// A block that cannot be written: larger than [`MAX_BLOCK_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {len}-byte block is larger than the {MAX_BLOCK_LEN}-byte limit")]
pub struct TooLarge {
    /// The block's length.
    pub len: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new(ByteOrder::NATIVE)
    }
}

impl Encoder {
    /// An encoder for a section in `order`.
    pub fn new(order: ByteOrder) -> Encoder {
        Encoder { order }
    }

    /// The byte order it writes.
    pub fn order(&self) -> ByteOrder {
        self.order
    }

    /// Starts a block: type and a length placeholder. Returns where the block starts.
    fn open(&self, out: &mut Vec<u8>, block_type: u32) -> usize {
        let start = out.len();
        self.order.put_u32(out, block_type);
        self.order.put_u32(out, 0);
        start
    }

    /// Pads the body, appends the trailer and fills in both lengths; on error `out` is left as it was.
    fn close(&self, out: &mut Vec<u8>, start: usize) -> Result<usize, TooLarge> {
        out.resize(start + pad4(out.len() - start), 0);
        let len = out.len() - start + 4;
        if len > MAX_BLOCK_LEN as usize {
            out.truncate(start);
            return Err(TooLarge { len });
        }
        self.order.put_u32(out, len as u32);
        let mut l = Vec::with_capacity(4);
        self.order.put_u32(&mut l, len as u32);
        out[start + 4..start + 8].copy_from_slice(&l);
        Ok(len)
    }

    fn option(&self, out: &mut Vec<u8>, code: u16, value: &[u8]) {
        let len = value.len().min(u16::MAX as usize & !3);
        self.order.put_u16(out, code);
        self.order.put_u16(out, len as u16);
        out.extend_from_slice(&value[..len]);
        out.resize(out.len() + pad4(len) - len, 0);
    }

    fn end_of_options(&self, out: &mut Vec<u8>) {
        self.order.put_u16(out, OPT_ENDOFOPT);
        self.order.put_u16(out, 0);
    }

    /// Appends a Section Header Block (version 1.0, section length -1: not known in advance).
    pub fn section_header(&self, out: &mut Vec<u8>, s: &Section) -> usize {
        let start = self.open(out, BLOCK_SHB);
        self.order.put_u32(out, BYTE_ORDER_MAGIC);
        self.order.put_u16(out, 1);
        self.order.put_u16(out, 0);
        self.order.put_u64(out, u64::MAX);
        let opts = [(SHB_HARDWARE, &s.hardware), (SHB_OS, &s.os), (SHB_USERAPPL, &s.userappl)];
        let any = opts.iter().any(|(_, v)| v.is_some());
        for (code, v) in opts {
            if let Some(v) = v {
                self.option(out, code, v.as_bytes());
            }
        }
        if any {
            self.end_of_options(out);
        }
        self.close(out, start).unwrap_or(0)
    }

    /// Appends an Interface Description Block.
    pub fn interface(&self, out: &mut Vec<u8>, i: &Interface) -> usize {
        let start = self.open(out, BLOCK_IDB);
        self.order.put_u16(out, i.link_type);
        self.order.put_u16(out, 0);
        self.order.put_u32(out, i.snaplen);
        if let Some(name) = &i.name {
            self.option(out, IF_NAME, name.as_bytes());
        }
        if let Some(d) = &i.description {
            self.option(out, IF_DESCRIPTION, d.as_bytes());
        }
        if i.tsresol != TSRESOL_DEFAULT {
            self.option(out, IF_TSRESOL, &[i.tsresol]);
        }
        if i.tsoffset != 0 {
            let mut v = Vec::with_capacity(8);
            self.order.put_u64(&mut v, i.tsoffset as u64);
            self.option(out, IF_TSOFFSET, &v);
        }
        self.end_of_options(out);
        self.close(out, start).unwrap_or(0)
    }

    /// Appends an Enhanced Packet Block for interface `interface_id`: `cooked` then `data`, timestamp in ticks
    /// of the interface's resolution. Data beyond `snaplen - 16` bytes is cut and `original_len` says so.
    pub fn packet(
        &self,
        out: &mut Vec<u8>,
        interface_id: u32,
        ticks: u64,
        cooked: &CookedHeader,
        data: &[u8],
        snaplen: u32,
    ) -> Result<usize, TooLarge> {
        let original = COOKED_HDRLEN + data.len();
        let limit = if snaplen == 0 { usize::MAX } else { snaplen as usize };
        let captured = original.min(limit).max(COOKED_HDRLEN);
        let start = self.open(out, BLOCK_EPB);
        self.order.put_u32(out, interface_id);
        self.order.put_u32(out, (ticks >> 32) as u32);
        self.order.put_u32(out, ticks as u32);
        self.order.put_u32(out, captured as u32);
        self.order.put_u32(out, u32::try_from(original).unwrap_or(u32::MAX));
        out.extend_from_slice(&cooked.to_bytes());
        out.extend_from_slice(&data[..captured - COOKED_HDRLEN]);
        self.close(out, start)
    }

    /// Appends a Custom Block (copyable, [`CNLINK_PEN`]) holding `record`.
    pub fn record(&self, out: &mut Vec<u8>, record: &Record) -> Result<usize, TooLarge> {
        let start = self.open(out, BLOCK_CUSTOM_COPY);
        self.order.put_u32(out, CNLINK_PEN);
        record.emit(out);
        self.close(out, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_section_header_bytes() {
        let mut v = Vec::new();
        let n = Encoder::new(ByteOrder::Little).section_header(&mut v, &Section::default());
        assert_eq!(n, 28);
        assert_eq!(
            v,
            [
                0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff, 0xff, 28, 0, 0, 0
            ]
        );
        let mut b = Vec::new();
        Encoder::new(ByteOrder::Big).section_header(&mut b, &Section::default());
        assert_eq!(&b[4..12], &[0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d]);
    }

    #[test]
    fn packet_is_padded_and_cut_at_snaplen() {
        let e = Encoder::new(ByteOrder::Little);
        let c = CookedHeader::for_datagram(11, &[]);
        let mut v = Vec::new();
        let n = e.packet(&mut v, 0, 1, &c, &[1, 2, 3], 0).unwrap();
        assert_eq!(n, 28 + 20 + 4);
        assert_eq!(&v[20..28], &[19, 0, 0, 0, 19, 0, 0, 0]);
        v.clear();
        e.packet(&mut v, 0, 1, &c, &[1, 2, 3, 4, 5], 18).unwrap();
        assert_eq!(&v[20..28], &[18, 0, 0, 0, 21, 0, 0, 0]);
    }
}
