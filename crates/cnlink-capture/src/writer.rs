//! [`CaptureWriter`]: a capture file on any [`Write`]: the header blocks, then packets and records as they come.
//!
//! It buffers nothing itself and never reads a clock: give it a `BufWriter` and call it from a writer thread, with
//! timestamps the caller chose (a proc event's kernel time converted to wall clock, or the receive time). A block is
//! encoded whole before it is written, so a file cut short ends with at most one partial block, which the readers
//! report with its offset.

use std::io::{self, Write};

use crate::cooked::CookedHeader;
use crate::encode::{Encoder, Interface, Section, TooLarge};
use crate::order::ByteOrder;
use crate::record::{HostInfo, Record};

/// What starts every file: the section's options, one interface per netlink family, the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// The Section Header Block's options.
    pub section: Section,
    /// Netlink families to describe up front, in interface id order; others get an interface when first seen.
    pub protocols: Vec<u16>,
    /// The host record written after the interfaces.
    pub host: Option<HostInfo>,
    /// Records written after the host record at the head of every file (a session record, say).
    pub records: Vec<Record>,
}

impl FileHeader {
    /// A header naming cnlink and its version in `shb_userappl`, `Linux <release>` in `shb_os` when known, with an
    /// interface per family in `protocols` and no host record.
    pub fn netlink(protocols: &[u16]) -> FileHeader {
        FileHeader {
            section: Section {
                hardware: Some(std::env::consts::ARCH.to_string()),
                os: Some("Linux".to_string()),
                userappl: Some(format!("cnlink {}", env!("CARGO_PKG_VERSION"))),
            },
            protocols: protocols.to_vec(),
            host: None,
            records: Vec::new(),
        }
    }

    /// The same header with `host` as its host record and `shb_os` naming the kernel release.
    pub fn with_host(mut self, host: HostInfo) -> FileHeader {
        if !host.kernel_release.is_empty() {
            self.section.os = Some(format!("Linux {}", host.kernel_release));
        }
        self.host = Some(host);
        self
    }

    /// The same header with `record` written after the host record in every file.
    pub fn with_record(mut self, record: Record) -> FileHeader {
        self.records.push(record);
        self
    }
}

fn too_large(e: TooLarge) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Writes one capture file (one pcapng section) to `W`.
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    out: W,
    encoder: Encoder,
    /// Netlink family and snaplen of each interface, by id.
    interfaces: Vec<(u16, u32)>,
    scratch: Vec<u8>,
    bytes: u64,
    packets: u64,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the header blocks (Section Header, an Interface Description per protocol, the host record, the
    /// header's other records) to
    /// `out`, in this machine's byte order, which is also the datagrams' order.
    pub fn new(out: W, header: &FileHeader) -> io::Result<CaptureWriter<W>> {
        Self::with_byte_order(out, header, ByteOrder::NATIVE)
    }

    /// Like [`CaptureWriter::new`], with the pcapng fields in `order`; the datagrams are written as given, never
    /// swapped (the host record's `byte_order` says which order they are in).
    pub fn with_byte_order(out: W, header: &FileHeader, order: ByteOrder) -> io::Result<CaptureWriter<W>> {
        let mut w = CaptureWriter {
            out,
            encoder: Encoder::new(order),
            interfaces: Vec::new(),
            scratch: Vec::with_capacity(4096),
            bytes: 0,
            packets: 0,
        };
        w.encoder.section_header(&mut w.scratch, &header.section);
        w.put()?;
        for &p in &header.protocols {
            w.interface_for(p)?;
        }
        if let Some(host) = &header.host {
            w.write_record(&Record::Host(host.clone()))?;
        }
        for r in &header.records {
            w.write_record(r)?;
        }
        Ok(w)
    }

    fn put(&mut self) -> io::Result<()> {
        self.out.write_all(&self.scratch)?;
        self.bytes += self.scratch.len() as u64;
        self.scratch.clear();
        Ok(())
    }

    /// The interface id of netlink family `protocol`, writing its description first if it has none yet.
    fn interface_for(&mut self, protocol: u16) -> io::Result<(u32, u32)> {
        if let Some(id) = self.interfaces.iter().position(|&(p, _)| p == protocol) {
            return Ok((id as u32, self.interfaces[id].1));
        }
        let i = Interface::netlink(protocol);
        self.encoder.interface(&mut self.scratch, &i);
        self.put()?;
        self.interfaces.push((protocol, i.snaplen));
        Ok((self.interfaces.len() as u32 - 1, i.snaplen))
    }

    /// Writes a datagram of netlink family `protocol` received at `timestamp_ns` (ns since the epoch), exactly
    /// as received, after a cooked header whose packet type comes from its sender port.
    pub fn write_datagram(&mut self, timestamp_ns: u64, protocol: u16, datagram: &[u8]) -> io::Result<()> {
        self.write_packet(timestamp_ns, &CookedHeader::for_datagram(protocol, datagram), datagram)
    }

    /// Writes a packet with the cooked header given (its `protocol` picks the interface).
    pub fn write_packet(&mut self, timestamp_ns: u64, cooked: &CookedHeader, data: &[u8]) -> io::Result<()> {
        let (id, snaplen) = self.interface_for(cooked.protocol)?;
        self.encoder.packet(&mut self.scratch, id, timestamp_ns, cooked, data, snaplen).map_err(too_large)?;
        self.put()?;
        self.packets += 1;
        Ok(())
    }

    /// Writes a cnlink record in a Custom Block.
    pub fn write_record(&mut self, record: &Record) -> io::Result<()> {
        self.encoder.record(&mut self.scratch, record).map_err(too_large)?;
        self.put()
    }

    /// Bytes written so far (handed to `W`, flushed or not).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Packets written so far.
    pub fn packets_written(&self) -> u64 {
        self.packets
    }

    /// Flushes `W`.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer, for its own use (e.g. `sync_data` on a file).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Flushes and returns `W`.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
