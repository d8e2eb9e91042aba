//! Property tests: what is written reads back identical, in both byte orders, through both readers; no input
//! makes a reader panic.

use cnlink_capture::{
    Block, ByteOrder, CaptureWriter, ExecObservation, FileHeader, HostInfo, Loss, LossKind, Note, Reader, Record,
    Session, Snapshot, SnapshotReason, StreamReader,
};
use proptest::prelude::*;

/// What a test writes: a datagram or a record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Datagram { timestamp_ns: u64, protocol: u16, data: Vec<u8> },
    Record(Record),
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..12).prop_map(|c| c.into_iter().collect())
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn host() -> impl Strategy<Value = HostInfo> {
    (any::<(i64, u64, u64, u32, u8)>(), [text(), text(), text(), text(), text(), text()]).prop_map(
        |((realtime_ns, monotonic_ns, boottime_ns, cpu_count, byte_order), [a, b, c, d, e, g])| HostInfo {
            realtime_ns,
            monotonic_ns,
            boottime_ns,
            cpu_count,
            byte_order,
            host_id: a,
            boot_id: b,
            kernel_release: c,
            online_cpus: d,
            hostname: e,
            machine: g,
        },
    )
}

fn loss_kind() -> impl Strategy<Value = LossKind> {
    prop_oneof![
        Just(LossKind::Unknown),
        Just(LossKind::SeqGap),
        Just(LossKind::Overrun),
        Just(LossKind::Queue),
        Just(LossKind::SocketDrops),
        Just(LossKind::Recording),
        (6u8..).prop_map(LossKind::Other),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        host().prop_map(Record::Host),
        (prop_oneof![Just(SnapshotReason::Start), Just(SnapshotReason::Rotation)], any::<(u32, u64)>(), bytes(300))
            .prop_map(|(reason, (encoding, timestamp_ns), data)| Record::Snapshot(Snapshot {
                reason,
                encoding,
                timestamp_ns,
                data
            })),
        (loss_kind(), any::<(Option<u64>, bool, Option<u32>, u64)>(), any::<Option<(u32, u32)>>()).prop_map(
            |(kind, (count, lower_bound, cpu, timestamp_ns), before)| Record::Loss(Loss {
                kind,
                count,
                lower_bound,
                cpu,
                timestamp_ns,
                before
            })
        ),
        (any::<(u32, i32, u64)>(), bytes(200)).prop_map(|((encoding, pid, timestamp_ns), data)| {
            Record::ExecObservation(ExecObservation { encoding, pid, timestamp_ns, data })
        }),
        (any::<u64>(), text()).prop_map(|(timestamp_ns, text)| Record::Note(Note { timestamp_ns, text })),
        (any::<(u32, u64)>(), bytes(200))
            .prop_map(|((encoding, timestamp_ns), data)| { Record::Session(Session { encoding, timestamp_ns, data }) }),
        (7u16.., any::<u16>(), bytes(64)).prop_map(|(kind, version, body)| Record::Unknown { kind, version, body }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        3 => (any::<u64>(), prop_oneof![Just(11u16), Just(2), Just(0), any::<u16>()], bytes(400))
            .prop_map(|(timestamp_ns, protocol, data)| Item::Datagram { timestamp_ns, protocol, data }),
        1 => record().prop_map(Item::Record),
    ]
}

fn write(items: &[Item], order: ByteOrder, host: Option<HostInfo>) -> Vec<u8> {
    let mut header = FileHeader::netlink(&[11]);
    header.host = host;
    let mut w = CaptureWriter::with_byte_order(Vec::new(), &header, order).unwrap();
    for it in items {
        match it {
            Item::Datagram { timestamp_ns, protocol, data } => w.write_datagram(*timestamp_ns, *protocol, data),
            Item::Record(r) => w.write_record(r),
        }
        .unwrap();
    }
    w.into_inner().unwrap()
}

/// The items a block sequence holds, checking the framing on the way: one section first, interfaces before use,
/// one interface per protocol.
fn items_of<'a>(blocks: impl IntoIterator<Item = Block<'a>>, order: ByteOrder) -> Vec<Item> {
    let mut out = Vec::new();
    let mut protocols: Vec<u16> = Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        match b {
            Block::Section(s) => {
                assert_eq!(i, 0);
                assert_eq!(s.byte_order, order);
                assert_eq!(s.options.userappl.as_deref(), Some(concat!("cnlink ", env!("CARGO_PKG_VERSION"))));
            }
            Block::Interface { id, interface } => {
                assert_eq!(id as usize, protocols.len());
                assert_eq!((interface.link_type, interface.tsresol), (253, 9));
                protocols.push(interface.name.unwrap().strip_prefix("cnlink-").unwrap().parse::<u16>().unwrap());
            }
            Block::Packet(p) => {
                let cooked = p.cooked.expect("netlink packet");
                assert_eq!(protocols[p.interface_id as usize], cooked.protocol);
                assert_eq!(cooked.hatype, 824);
                assert!(p.is_complete());
                out.push(Item::Datagram {
                    timestamp_ns: p.timestamp_ns,
                    protocol: cooked.protocol,
                    data: p.data.to_vec(),
                })
            }
            Block::Record(r) => out.push(Item::Record(r)),
            other => panic!("unexpected block {other:?}"),
        }
    }
    out
}

fn read_slice(file: &[u8], order: ByteOrder) -> Vec<Item> {
    items_of(Reader::new(file).map(|b| b.unwrap()), order)
}

/// The stream reader's items (the framing was checked on the slice reader's view of the same file).
fn read_stream(file: &[u8]) -> Vec<Item> {
    let mut r = StreamReader::new(file);
    let mut owned = Vec::new();
    while let Some(b) = r.next() {
        // Blocks borrow the reader's buffer: turn each into an item at once.
        owned.extend(items_of_one(b.unwrap()));
    }
    owned
}

fn items_of_one(b: Block<'_>) -> Option<Item> {
    match b {
        Block::Packet(p) => Some(Item::Datagram {
            timestamp_ns: p.timestamp_ns,
            protocol: p.protocol().unwrap(),
            data: p.data.to_vec(),
        }),
        Block::Record(r) => Some(Item::Record(r)),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn written_items_read_back_identical(
        items in proptest::collection::vec(item(), 0..40),
        big in any::<bool>(),
        host in proptest::option::of(host()),
    ) {
        let order = if big { ByteOrder::Big } else { ByteOrder::Little };
        let file = write(&items, order, host.clone());
        let mut expected: Vec<Item> = host.map(|h| Item::Record(Record::Host(h))).into_iter().collect();
        expected.extend(items.iter().cloned());
        prop_assert_eq!(&read_slice(&file, order), &expected);
        prop_assert_eq!(&read_stream(&file), &expected);
    }

    #[test]
    fn readers_never_panic_on_random_bytes(data in bytes(600)) {
        let n = Reader::new(&data).count();
        prop_assert!(n <= data.len() / 12 + 1);
        let mut s = StreamReader::new(&data[..]);
        while s.next().is_some() {}
    }

    #[test]
    fn readers_never_panic_on_mutated_files(
        items in proptest::collection::vec(item(), 1..10),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut file = write(&items, ByteOrder::NATIVE, None);
        for (at, v) in flips {
            let i = at.index(file.len());
            file[i] = v;
        }
        let mut last_ok = 0;
        let mut reader = Reader::new(&file);
        while let Some(b) = reader.next() {
            match b {
                Ok(_) => last_ok = reader.offset(),
                Err(d) => prop_assert_eq!(d.offset, last_ok, "damage is reported where reading stopped"),
            }
        }
        let mut s = StreamReader::new(&file[..]);
        let mut stream_blocks = 0;
        while let Some(b) = s.next() {
            if b.is_ok() { stream_blocks += 1; }
        }
        prop_assert_eq!(stream_blocks, Reader::new(&file).filter(|b| b.is_ok()).count());
    }
}
