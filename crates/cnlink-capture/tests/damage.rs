//! Damaged files: everything before the damage is read, then the damage is reported with its offset and kind.

mod common;

use std::io::{self, Read};

use cnlink_capture::pcapng::{BLOCK_EPB, BLOCK_IDB};
use cnlink_capture::{
    Block, ByteOrder, CaptureWriter, Damage, DamageKind, Encoder, FileHeader, HostInfo, Interface, Loss, LossKind,
    Note, ReadError, Reader, Record, Section, StreamReader,
};

/// A small real capture: header, host, the four kernel datagrams, a loss and a note.
fn small_file() -> Vec<u8> {
    let host = HostInfo { cpu_count: 2, kernel_release: "6.18.0".into(), ..Default::default() };
    let mut w = CaptureWriter::new(Vec::new(), &FileHeader::netlink(&[11]).with_host(host)).unwrap();
    for (i, (_, d)) in common::kernel_datagrams().iter().enumerate() {
        w.write_datagram(1_700_000_000_000_000_000 + i as u64, 11, d).unwrap();
    }
    let loss = Loss {
        kind: LossKind::SeqGap,
        count: Some(2),
        lower_bound: false,
        cpu: Some(1),
        timestamp_ns: 9,
        before: None,
    };
    w.write_record(&Record::Loss(loss)).unwrap();
    w.write_record(&Record::Note(Note { timestamp_ns: 10, text: "end".into() })).unwrap();
    w.into_inner().unwrap()
}

/// Start offsets of every block of a whole file, plus its length.
fn boundaries(file: &[u8]) -> Vec<usize> {
    let mut r = Reader::new(file);
    let mut v = vec![0];
    while let Some(b) = r.next() {
        b.unwrap();
        v.push(r.offset() as usize);
    }
    v
}

/// (number of blocks read, the damage) through the slice reader.
fn read_slice(data: &[u8]) -> (usize, Option<Damage>) {
    let mut n = 0;
    for b in Reader::new(data) {
        match b {
            Ok(_) => n += 1,
            Err(d) => return (n, Some(d)),
        }
    }
    (n, None)
}

/// The same through the stream reader over `inner`.
fn read_stream(inner: impl Read) -> (usize, Option<Damage>) {
    let mut r = StreamReader::new(inner);
    let mut n = 0;
    while let Some(b) = r.next() {
        match b {
            Ok(_) => n += 1,
            Err(ReadError::Damage(d)) => return (n, Some(d)),
            Err(ReadError::Io(e)) => panic!("io error {e}"),
        }
    }
    (n, None)
}

#[test]
fn truncation_at_every_offset_reads_everything_before_it() {
    let file = small_file();
    let bounds = boundaries(&file);
    assert_eq!(bounds.len(), 1 + 1 + 1 + 1 + 4 + 2, "SHB, IDB, host, 4 packets, loss, note");
    for cut in 0..=file.len() {
        let data = &file[..cut];
        let whole = bounds.iter().filter(|&&b| b > 0 && b <= cut).count();
        let expected = if cut == 0 {
            (0, Some(Damage { offset: 0, kind: DamageKind::Truncated { needed: 12, available: 0 } }))
        } else if bounds.contains(&cut) {
            (whole, None)
        } else {
            let start = bounds[whole];
            let left = (cut - start) as u64;
            let block_len = (bounds[whole + 1] - start) as u64;
            let needed = if start == 0 && left < 12 {
                if left < 8 {
                    8
                } else {
                    12
                }
            } else if left < 8 {
                8
            } else {
                block_len
            };
            (whole, Some(Damage { offset: start as u64, kind: DamageKind::Truncated { needed, available: left } }))
        };
        assert_eq!(read_slice(data), expected, "cut at {cut}");
        assert_eq!(read_stream(data), expected, "stream cut at {cut}");
    }
}

/// Sets the length at the start of the block at `at` (native order: the writer's).
fn set_len(file: &mut [u8], at: usize, len: u32) {
    file[at + 4..at + 8].copy_from_slice(&len.to_ne_bytes());
}

#[test]
fn corrupted_lengths_stop_at_the_block() {
    let file = small_file();
    let bounds = boundaries(&file);
    // Every block but the section header (whose length decides the byte order check too; covered below).
    for (i, w) in bounds.windows(2).enumerate().skip(1) {
        let (start, end) = (w[0], w[1]);
        let len = (end - start) as u32;
        let cases: [(u32, DamageKind); 6] = [
            (0, DamageKind::BlockLength { length: 0 }),
            (8, DamageKind::BlockLength { length: 8 }),
            (len + 1, DamageKind::BlockLength { length: len + 1 }),
            (0xffff_fff0, DamageKind::BlockLength { length: 0xffff_fff0 }),
            (
                len - 4,
                DamageKind::TrailerMismatch {
                    header: len - 4,
                    trailer: u32::from_ne_bytes(file[end - 8..end - 4].try_into().unwrap()),
                },
            ),
            (
                len + 4,
                if end == file.len() {
                    DamageKind::Truncated { needed: u64::from(len) + 4, available: u64::from(len) }
                } else {
                    DamageKind::TrailerMismatch {
                        header: len + 4,
                        trailer: u32::from_ne_bytes(file[end..end + 4].try_into().unwrap()),
                    }
                },
            ),
        ];
        for (bad, kind) in cases {
            let mut f = file.clone();
            set_len(&mut f, start, bad);
            let expected = (i, Some(Damage { offset: start as u64, kind }));
            assert_eq!(read_slice(&f), expected, "block {i} length {bad}");
            assert_eq!(read_stream(&f[..]), expected, "stream: block {i} length {bad}");
        }
    }
}

#[test]
fn a_bad_trailer_is_damage() {
    let mut file = small_file();
    let bounds = boundaries(&file);
    let (start, end) = (bounds[4], bounds[5]); // the second packet
    file[end - 4] ^= 0x40;
    let (n, d) = read_slice(&file);
    assert_eq!(n, 4);
    let d = d.unwrap();
    assert_eq!(d.offset, start as u64);
    assert!(matches!(d.kind, DamageKind::TrailerMismatch { .. }), "{d}");
    assert!(d.to_string().starts_with(&format!("damaged capture at byte {start}: block length")), "{d}");
}

#[test]
fn the_section_header_is_checked() {
    let file = small_file();
    let mut garbage = file.clone();
    garbage[0] = 0x01;
    assert_eq!(
        read_slice(&garbage),
        (
            0,
            Some(Damage {
                offset: 0,
                kind: DamageKind::NotPcapng { block_type: u32::from_le_bytes([1, 0x0d, 0x0d, 0x0a]) }
            })
        )
    );
    let mut magic = file.clone();
    magic[8..12].copy_from_slice(&[1, 2, 3, 4]);
    assert_eq!(read_slice(&magic).1.unwrap().kind, DamageKind::ByteOrderMagic { magic: 0x0403_0201 });
    let mut version = file.clone();
    version[12..14].copy_from_slice(&2u16.to_ne_bytes());
    assert_eq!(read_slice(&version).1.unwrap().kind, DamageKind::Version { major: 2, minor: 0 });
    let mut options = file.clone();
    // The first option's length now runs past the block.
    options[26..28].copy_from_slice(&0x0400u16.to_ne_bytes());
    assert!(matches!(
        read_slice(&options).1.unwrap().kind,
        DamageKind::Malformed { what: "option past the end of the block", .. }
    ));
}

/// A file of hand-made blocks in `order`: a section, a netlink interface, then `rest`.
fn hand_made(order: ByteOrder, rest: impl FnOnce(&Encoder, &mut Vec<u8>)) -> Vec<u8> {
    let e = Encoder::new(order);
    let mut v = Vec::new();
    e.section_header(&mut v, &Section::default());
    e.interface(&mut v, &Interface::netlink(11));
    rest(&e, &mut v);
    v
}

#[test]
fn packet_fields_are_checked_against_the_block() {
    let cooked = cnlink_capture::CookedHeader::for_datagram(11, &[]);
    // Captured length past the block.
    let file = hand_made(ByteOrder::Little, |e, v| {
        let at = v.len();
        e.packet(v, 0, 5, &cooked, &[1, 2, 3, 4], 0).unwrap();
        v[at + 20..at + 24].copy_from_slice(&100u32.to_le_bytes());
    });
    let (n, d) = read_slice(&file);
    assert_eq!(n, 2);
    assert_eq!(
        d.unwrap().kind,
        DamageKind::Malformed { block_type: BLOCK_EPB, what: "captured length past the block" }
    );
    // A packet for an interface the section does not have.
    let file = hand_made(ByteOrder::Big, |e, v| {
        e.packet(v, 3, 5, &cooked, &[1, 2, 3, 4], 0).unwrap();
    });
    assert_eq!(read_slice(&file).1.unwrap().kind, DamageKind::UnknownInterface { interface_id: 3 });
    // An interface block too short for its fields.
    let file = hand_made(ByteOrder::Little, |_, v| {
        v.extend_from_slice(&[1, 0, 0, 0, 16, 0, 0, 0, 0xfd, 0, 0, 0, 16, 0, 0, 0]);
    });
    assert_eq!(
        read_slice(&file).1.unwrap().kind,
        DamageKind::Malformed { block_type: BLOCK_IDB, what: "shorter than an interface description" }
    );
}

#[test]
fn cnlink_records_that_do_not_decode_are_damage_and_foreign_blocks_are_not() {
    let file = hand_made(ByteOrder::Little, |e, v| {
        // An unknown block type, a custom block of another PEN, one of ours without the magic, then a broken one.
        v.extend_from_slice(&[0x99, 0, 0, 0, 16, 0, 0, 0, 1, 2, 3, 4, 16, 0, 0, 0]);
        v.extend_from_slice(&[0xad, 0x0b, 0, 0, 20, 0, 0, 0, 0x39, 0x30, 0, 0, b'a', b'b', b'c', b'd', 20, 0, 0, 0]);
        v.extend_from_slice(&[0xad, 0x0b, 0, 0x40, 20, 0, 0, 0, 0xd9, 0x7e, 0, 0, b'a', b'b', b'c', b'd', 20, 0, 0, 0]);
        let at = v.len();
        e.record(v, &Record::Note(Note { timestamp_ns: 1, text: "x".into() })).unwrap();
        // The record's length now runs past the custom data.
        v[at + 20..at + 24].copy_from_slice(&200u32.to_le_bytes());
    });
    let blocks: Vec<_> = Reader::new(&file).collect();
    assert_eq!(blocks.len(), 6);
    assert!(matches!(blocks[2], Ok(Block::Other { block_type: 0x99, body: [1, 2, 3, 4] })));
    assert!(matches!(blocks[3], Ok(Block::Custom { pen: 12345, copy: true, data: b"abcd" })));
    assert!(matches!(blocks[4], Ok(Block::Custom { pen: 32473, copy: false, data: b"abcd" })));
    let Err(d) = &blocks[5] else { panic!("{:?}", blocks[5]) };
    assert_eq!(d.kind, DamageKind::Malformed { block_type: 0xbad, what: "body past the end" });
}

#[test]
fn sections_of_both_byte_orders_follow_each_other() {
    let mut file = hand_made(ByteOrder::Big, |e, v| {
        e.packet(v, 0, 7, &cnlink_capture::CookedHeader::for_datagram(11, &[]), &[9; 20], 0).unwrap();
    });
    file.extend(hand_made(ByteOrder::Little, |e, v| {
        e.packet(v, 0, 8, &cnlink_capture::CookedHeader::for_datagram(11, &[]), &[8; 20], 0).unwrap();
    }));
    let blocks: Vec<_> = Reader::new(&file).map(|b| b.unwrap()).collect();
    assert_eq!(blocks.len(), 6);
    let packets: Vec<_> = blocks
        .iter()
        .filter_map(|b| if let Block::Packet(p) = b { Some((p.timestamp_ns, p.data[0])) } else { None })
        .collect();
    assert_eq!(packets, [(7, 9), (8, 8)]);
    assert!(matches!(&blocks[3], Block::Section(s) if s.byte_order == ByteOrder::Little));
}

/// A reader that hands out one byte at a time and is interrupted every other call.
struct Dribble<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let Some((&b, rest)) = self.data.split_first() else { return Ok(0) };
        if buf.is_empty() {
            return Ok(0);
        }
        buf[0] = b;
        self.data = rest;
        Ok(1)
    }
}

#[test]
fn stream_reader_handles_short_and_interrupted_reads() {
    let file = small_file();
    assert_eq!(read_stream(Dribble { data: &file, interrupt: false }), (9, None));
    let cut = &file[..file.len() - 3];
    assert_eq!(read_stream(Dribble { data: cut, interrupt: false }), read_slice(cut));
}

#[test]
fn stream_reader_passes_io_errors_on() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }
    let mut r = StreamReader::new(Failing);
    assert!(matches!(r.next(), Some(Err(ReadError::Io(e))) if e.to_string() == "disk on fire"));
    assert!(r.next().is_none());
}
