//! cnlink's records: what a capture holds besides datagrams, each in one pcapng Custom Block.
//!
//! The Custom Block's Private Enterprise Number is [`CNLINK_PEN`], in the section's byte order like every pcapng
//! field. Its custom data is a record, **always little-endian** whatever the section's byte order (the draft's
//! advice: a rewriter on another machine swaps the fields it knows, never the custom data):
//!
//! ```text
//! offset  size  field
//!      0     4  magic    "CNLK": tells cnlink's records from other users of the same PEN
//!      4     2  kind     RECORD_* below; unknown kinds are kept as Record::Unknown
//!      6     2  version  layout version of this kind (1); readers accept later versions with more trailing fields
//!      8     4  length   body bytes that follow
//!     12     n  body     by kind (docs/capture-format.md has every layout), then zero padding to 4
//! ```
//!
//! Timestamps in records are wall-clock nanoseconds since the Unix epoch, the clock of the packets.

use crate::order::ByteOrder;

/// The Private Enterprise Number of cnlink's Custom Blocks.
///
/// A placeholder: 32473 is IANA's "Example Enterprise Number for Documentation Use" (RFC 5612), used until cnlink
/// registers its own. The `CNLK` magic at the start of every record tells cnlink's blocks apart from others that use
/// it. Changing it is a one-line change here; readers should then accept both.
pub const CNLINK_PEN: u32 = 32473;

/// The magic that starts every record.
pub const RECORD_MAGIC: [u8; 4] = *b"CNLK";
/// Size of the record header.
pub const RECORD_HDRLEN: usize = 12;
/// The layout version this crate writes.
pub const RECORD_VERSION: u16 = 1;

/// Kind of [`HostInfo`].
pub const RECORD_HOST: u16 = 1;
/// Kind of [`Snapshot`].
pub const RECORD_SNAPSHOT: u16 = 2;
/// Kind of [`Loss`].
pub const RECORD_LOSS: u16 = 3;
/// Kind of [`ExecObservation`].
pub const RECORD_EXEC_OBSERVATION: u16 = 4;
/// Kind of [`Note`].
pub const RECORD_NOTE: u16 = 5;
/// Kind of [`Session`].
pub const RECORD_SESSION: u16 = 6;
/// Kind of [`Clock`].
pub const RECORD_CLOCK: u16 = 7;

/// A record that does not decode: too short for its kind or its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cnlink record: {0}")]
pub struct RecordError(pub &'static str);

/// One cnlink record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Record {
    /// The machine and clocks of the capture; first after the interfaces in every file.
    Host(HostInfo),
    /// The process table at start, or at the start of a rotated file.
    Snapshot(Snapshot),
    /// Lost events or datagrams.
    Loss(Loss),
    /// What the monitor read from `/proc` for one exec.
    ExecObservation(ExecObservation),
    /// Free text.
    Note(Note),
    /// What made the recording, and with which settings.
    Session(Session),
    /// How the recording program turned kernel times into local time, from some moment on.
    Clock(Clock),
    /// A kind this version does not know, kept as bytes.
    Unknown {
        /// The record kind.
        kind: u16,
        /// Its layout version.
        version: u16,
        /// The body.
        body: Vec<u8>,
    },
}

/// Byte order of captured datagrams, as kept in [`HostInfo`].
pub const DATAGRAMS_LITTLE_ENDIAN: u8 = 1;
/// See [`DATAGRAMS_LITTLE_ENDIAN`].
pub const DATAGRAMS_BIG_ENDIAN: u8 = 2;

/// The machine a capture was taken on, and its clocks at start.
///
/// ```text
/// offset  size  field
///      0     8  realtime_ns    i64  CLOCK_REALTIME at start
///      8     8  monotonic_ns   u64  CLOCK_MONOTONIC read just after (the proc connector's clock)
///     16     8  boottime_ns    u64  CLOCK_BOOTTIME read just after
///     24     4  cpu_count      u32  possible CPUs (each has its own proc connector seq counter)
///     28     1  byte_order     u8   of the datagrams: 1 little, 2 big
///     29     3  reserved       0
///     32     -  six strings, each u16 length then UTF-8: host_id, boot_id, kernel_release, online_cpus, hostname,
///               machine
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostInfo {
    /// `CLOCK_REALTIME` at start, in ns since the epoch.
    pub realtime_ns: i64,
    /// `CLOCK_MONOTONIC` at the same moment.
    pub monotonic_ns: u64,
    /// `CLOCK_BOOTTIME` at the same moment.
    pub boottime_ns: u64,
    /// Possible CPUs.
    pub cpu_count: u32,
    /// Byte order of the captured datagrams ([`DATAGRAMS_LITTLE_ENDIAN`] or [`DATAGRAMS_BIG_ENDIAN`]).
    pub byte_order: u8,
    /// `/etc/machine-id`.
    pub host_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// Online CPUs as the kernel lists them (`0-3,6`).
    pub online_cpus: String,
    /// `uname -n`.
    pub hostname: String,
    /// `uname -m`.
    pub machine: String,
}

impl HostInfo {
    /// `realtime - monotonic` at start: add it to a proc event's `timestamp_ns` to get wall-clock time.
    pub fn monotonic_to_realtime_ns(&self) -> i64 {
        self.realtime_ns.wrapping_sub(self.monotonic_ns as i64)
    }
}

/// Why a [`Snapshot`] was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotReason {
    /// At start: what the process table was seeded with.
    Start,
    /// At the start of a rotated file: the process table then, so the file can be replayed alone.
    Rotation,
    /// A reason this version does not know.
    Other(u8),
}

impl SnapshotReason {
    fn to_u8(self) -> u8 {
        match self {
            SnapshotReason::Start => 1,
            SnapshotReason::Rotation => 2,
            SnapshotReason::Other(n) => n,
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            1 => SnapshotReason::Start,
            2 => SnapshotReason::Rotation,
            n => SnapshotReason::Other(n),
        }
    }
}

/// The process table as opaque bytes; the process-model crate defines `encoding` and the bytes.
///
/// ```text
/// offset  size  field
///      0     1  reason        1 start, 2 rotation
///      1     3  reserved      0
///      4     4  encoding      u32, defined by the process-model crate
///      8     8  timestamp_ns  u64
///     16     -  data
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Why it was taken.
    pub reason: SnapshotReason,
    /// How `data` is encoded (a number the process-model crate defines).
    pub encoding: u32,
    /// When it was taken.
    pub timestamp_ns: u64,
    /// The encoded table.
    pub data: Vec<u8>,
}

/// What was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Not known.
    Unknown,
    /// A gap in a CPU's proc connector `seq`.
    SeqGap,
    /// The socket's receive buffer overran (`ENOBUFS`).
    Overrun,
    /// cnlink's own queue between receiver and writers was full.
    Queue,
    /// The socket dropped datagrams (`SO_RXQ_OVFL`, `/proc/net/netlink` drops).
    SocketDrops,
    /// The recording's own channel was full: what is missing is missing from the file, not from what the
    /// recording program received or showed.
    Recording,
    /// A kind this version does not know.
    Other(u8),
}

impl LossKind {
    fn to_u8(self) -> u8 {
        match self {
            LossKind::Unknown => 0,
            LossKind::SeqGap => 1,
            LossKind::Overrun => 2,
            LossKind::Queue => 3,
            LossKind::SocketDrops => 4,
            LossKind::Recording => 5,
            LossKind::Other(n) => n,
        }
    }

    fn from_u8(n: u8) -> Self {
        match n {
            0 => LossKind::Unknown,
            1 => LossKind::SeqGap,
            2 => LossKind::Overrun,
            3 => LossKind::Queue,
            4 => LossKind::SocketDrops,
            5 => LossKind::Recording,
            n => LossKind::Other(n),
        }
    }
}

const LOSS_COUNT_KNOWN: u8 = 1;
const LOSS_LOWER_BOUND: u8 = 2;
const LOSS_CPU_KNOWN: u8 = 4;
const LOSS_BEFORE_KNOWN: u8 = 8;

/// One loss, as the receiver accounted it.
///
/// ```text
/// offset  size  field
///      0     1  kind          0 unknown, 1 seq gap, 2 overrun, 3 queue, 4 socket drops, 5 recording
///      1     1  flags         bit 0: count known, bit 1: count is a lower bound, bit 2: cpu known
///      2     2  reserved      0
///      4     4  cpu           u32 (0 unless known)
///      8     8  count         u64 (0 unless known)
///     16     8  timestamp_ns  u64
///     24     4  before_cpu    u32 \ the message the loss came before (flags bit 3); absent in records
///     28     4  before_seq    u32 / written without it
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loss {
    /// What was lost.
    pub kind: LossKind,
    /// How many, when known.
    pub count: Option<u64>,
    /// `count` is a lower bound (at least that many).
    pub lower_bound: bool,
    /// The CPU whose messages were lost, when known.
    pub cpu: Option<u32>,
    /// When the loss was seen.
    pub timestamp_ns: u64,
    /// The proc connector message (CPU, `seq`) the loss was reported right before, when it was one: a sequence
    /// gap is revealed by the next message of its CPU.
    pub before: Option<(u32, u32)>,
}

/// What the live monitor read from `/proc` for one exec, so replay uses it instead of reading `/proc`.
///
/// ```text
/// offset  size  field
///      0     4  encoding      u32, defined by the process-model crate
///      4     4  pid           i32
///      8     8  timestamp_ns  u64
///     16     -  data
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecObservation {
    /// How `data` is encoded (a number the process-model crate defines).
    pub encoding: u32,
    /// The process.
    pub pid: i32,
    /// When it was read.
    pub timestamp_ns: u64,
    /// The encoded observation.
    pub data: Vec<u8>,
}

/// What made a recording and with which settings, so that a replay can run the same way: the command, its
/// options, the events subscribed to, the recording process's pid.
///
/// ```text
/// offset  size  field
///      0     4  encoding      u32, defined by the writer (cnlink's command line: 1, JSON)
///      4     4  reserved      0
///      8     8  timestamp_ns  u64
///     16     -  data
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// How `data` is encoded.
    pub encoding: u32,
    /// When the recording started.
    pub timestamp_ns: u64,
    /// The encoded settings.
    pub data: Vec<u8>,
}

/// From `from_monotonic_ns` on, a kernel time `t` (`CLOCK_MONOTONIC`) was local time
/// `t + realtime_minus_monotonic_ns + utc_offset_s * 10^9` for the recording program: what its time column
/// printed. One at the head of every file (from 0, or from the moment it was taken), then one whenever the
/// offset moved (a suspend, a clock step, a time zone change); replay prints with exactly these.
///
/// ```text
/// offset  size  field
///      0     8  from_monotonic_ns            u64  applies to events at or after this kernel time
///      8     8  realtime_minus_monotonic_ns  i64  CLOCK_REALTIME - CLOCK_MONOTONIC
///     16     4  utc_offset_s                 i32  the local time zone's offset east of UTC, in seconds
///     20     4  reserved                     0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Clock {
    /// The first kernel time (`CLOCK_MONOTONIC` ns) it applies to.
    pub from_monotonic_ns: u64,
    /// `CLOCK_REALTIME - CLOCK_MONOTONIC`, in ns.
    pub realtime_minus_monotonic_ns: i64,
    /// The local time zone's offset east of UTC, in seconds.
    pub utc_offset_s: i32,
}

impl Clock {
    /// The offset from a kernel time to local time, in ns.
    pub fn local_offset_ns(&self) -> i128 {
        i128::from(self.realtime_minus_monotonic_ns) + i128::from(self.utc_offset_s) * 1_000_000_000
    }
}

/// Free text.
///
/// ```text
/// offset  size  field
///      0     8  timestamp_ns  u64
///      8     -  text          UTF-8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// When it was written.
    pub timestamp_ns: u64,
    /// The text.
    pub text: String,
}

const LE: ByteOrder = ByteOrder::Little;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than 65535 bytes are cut at a character boundary.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    LE.put_u16(out, end as u16);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

/// Reads a length-prefixed string at `*at`, advancing it.
fn take_str(body: &[u8], at: &mut usize) -> Result<String, RecordError> {
    let len = LE.u16_at(body, *at).ok_or(RecordError("string length past the end"))? as usize;
    let bytes = body.get(*at + 2..*at + 2 + len).ok_or(RecordError("string past the end"))?;
    *at += 2 + len;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

impl Record {
    /// The record's kind number.
    pub fn kind(&self) -> u16 {
        match self {
            Record::Host(_) => RECORD_HOST,
            Record::Snapshot(_) => RECORD_SNAPSHOT,
            Record::Loss(_) => RECORD_LOSS,
            Record::ExecObservation(_) => RECORD_EXEC_OBSERVATION,
            Record::Note(_) => RECORD_NOTE,
            Record::Session(_) => RECORD_SESSION,
            Record::Clock(_) => RECORD_CLOCK,
            Record::Unknown { kind, .. } => *kind,
        }
    }

    /// Appends the record (header, body, no padding) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&RECORD_MAGIC);
        LE.put_u16(out, self.kind());
        LE.put_u16(out, if let Record::Unknown { version, .. } = self { *version } else { RECORD_VERSION });
        LE.put_u32(out, 0); // length, set below
        let body = out.len();
        match self {
            Record::Host(h) => {
                LE.put_u64(out, h.realtime_ns as u64);
                LE.put_u64(out, h.monotonic_ns);
                LE.put_u64(out, h.boottime_ns);
                LE.put_u32(out, h.cpu_count);
                out.extend_from_slice(&[h.byte_order, 0, 0, 0]);
                for s in [&h.host_id, &h.boot_id, &h.kernel_release, &h.online_cpus, &h.hostname, &h.machine] {
                    put_str(out, s);
                }
            }
            Record::Snapshot(s) => {
                out.extend_from_slice(&[s.reason.to_u8(), 0, 0, 0]);
                LE.put_u32(out, s.encoding);
                LE.put_u64(out, s.timestamp_ns);
                out.extend_from_slice(&s.data);
            }
            Record::Loss(l) => {
                let flags = if l.count.is_some() { LOSS_COUNT_KNOWN } else { 0 }
                    | if l.lower_bound { LOSS_LOWER_BOUND } else { 0 }
                    | if l.cpu.is_some() { LOSS_CPU_KNOWN } else { 0 }
                    | if l.before.is_some() { LOSS_BEFORE_KNOWN } else { 0 };
                out.extend_from_slice(&[l.kind.to_u8(), flags, 0, 0]);
                LE.put_u32(out, l.cpu.unwrap_or(0));
                LE.put_u64(out, l.count.unwrap_or(0));
                LE.put_u64(out, l.timestamp_ns);
                if let Some((cpu, seq)) = l.before {
                    LE.put_u32(out, cpu);
                    LE.put_u32(out, seq);
                }
            }
            Record::ExecObservation(o) => {
                LE.put_u32(out, o.encoding);
                LE.put_u32(out, o.pid as u32);
                LE.put_u64(out, o.timestamp_ns);
                out.extend_from_slice(&o.data);
            }
            Record::Note(n) => {
                LE.put_u64(out, n.timestamp_ns);
                out.extend_from_slice(n.text.as_bytes());
            }
            Record::Session(s) => {
                LE.put_u32(out, s.encoding);
                LE.put_u32(out, 0);
                LE.put_u64(out, s.timestamp_ns);
                out.extend_from_slice(&s.data);
            }
            Record::Clock(c) => {
                LE.put_u64(out, c.from_monotonic_ns);
                LE.put_u64(out, c.realtime_minus_monotonic_ns as u64);
                LE.put_u32(out, c.utc_offset_s as u32);
                LE.put_u32(out, 0);
            }
            Record::Unknown { body, .. } => out.extend_from_slice(body),
        }
        let len = (out.len() - body) as u32;
        out[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
    }

    /// Decodes a record from a Custom Block's custom data (header, body, then padding or anything else, which is
    /// ignored). `Ok(None)` when the data does not start with the `CNLK` magic: another user of the PEN.
    pub fn parse(data: &[u8]) -> Result<Option<Record>, RecordError> {
        if data.get(..4) != Some(&RECORD_MAGIC[..]) {
            return Ok(None);
        }
        let short = RecordError("header past the end");
        let kind = LE.u16_at(data, 4).ok_or(short)?;
        let version = LE.u16_at(data, 6).ok_or(short)?;
        let len = LE.u32_at(data, 8).ok_or(short)? as usize;
        let body =
            data.get(RECORD_HDRLEN..RECORD_HDRLEN.saturating_add(len)).ok_or(RecordError("body past the end"))?;
        Self::parse_body(kind, version, body).map(Some)
    }

    fn parse_body(kind: u16, version: u16, b: &[u8]) -> Result<Record, RecordError> {
        let need = |n: usize| if b.len() >= n { Ok(()) } else { Err(RecordError("body too short for its kind")) };
        let u32_at = |at| LE.u32_at(b, at).unwrap_or(0);
        let u64_at = |at| LE.u64_at(b, at).unwrap_or(0);
        Ok(match kind {
            RECORD_HOST => {
                need(32)?;
                let mut at = 32;
                let mut s = || take_str(b, &mut at);
                Record::Host(HostInfo {
                    realtime_ns: u64_at(0) as i64,
                    monotonic_ns: u64_at(8),
                    boottime_ns: u64_at(16),
                    cpu_count: u32_at(24),
                    byte_order: b[28],
                    host_id: s()?,
                    boot_id: s()?,
                    kernel_release: s()?,
                    online_cpus: s()?,
                    hostname: s()?,
                    machine: s()?,
                })
            }
            RECORD_SNAPSHOT => {
                need(16)?;
                Record::Snapshot(Snapshot {
                    reason: SnapshotReason::from_u8(b[0]),
                    encoding: u32_at(4),
                    timestamp_ns: u64_at(8),
                    data: b[16..].to_vec(),
                })
            }
            RECORD_LOSS => {
                need(24)?;
                let flags = b[1];
                Record::Loss(Loss {
                    kind: LossKind::from_u8(b[0]),
                    count: (flags & LOSS_COUNT_KNOWN != 0).then(|| u64_at(8)),
                    lower_bound: flags & LOSS_LOWER_BOUND != 0,
                    cpu: (flags & LOSS_CPU_KNOWN != 0).then(|| u32_at(4)),
                    timestamp_ns: u64_at(16),
                    before: match (flags & LOSS_BEFORE_KNOWN != 0, LE.u32_at(b, 24), LE.u32_at(b, 28)) {
                        (true, Some(cpu), Some(seq)) => Some((cpu, seq)),
                        (true, ..) => return Err(RecordError("loss body too short for its message")),
                        _ => None,
                    },
                })
            }
            RECORD_EXEC_OBSERVATION => {
                need(16)?;
                Record::ExecObservation(ExecObservation {
                    encoding: u32_at(0),
                    pid: u32_at(4) as i32,
                    timestamp_ns: u64_at(8),
                    data: b[16..].to_vec(),
                })
            }
            RECORD_NOTE => {
                need(8)?;
                Record::Note(Note { timestamp_ns: u64_at(0), text: String::from_utf8_lossy(&b[8..]).into_owned() })
            }
            RECORD_SESSION => {
                need(16)?;
                Record::Session(Session { encoding: u32_at(0), timestamp_ns: u64_at(8), data: b[16..].to_vec() })
            }
            RECORD_CLOCK => {
                need(20)?;
                Record::Clock(Clock {
                    from_monotonic_ns: u64_at(0),
                    realtime_minus_monotonic_ns: u64_at(8) as i64,
                    utc_offset_s: u32_at(16) as i32,
                })
            }
            kind => Record::Unknown { kind, version, body: b.to_vec() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &Record) -> Record {
        let mut v = Vec::new();
        r.emit(&mut v);
        Record::parse(&v).unwrap().unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let host = HostInfo {
            realtime_ns: 1_700_000_000_000_000_000,
            monotonic_ns: 5,
            boottime_ns: 6,
            cpu_count: 2,
            byte_order: DATAGRAMS_LITTLE_ENDIAN,
            host_id: "abc".into(),
            boot_id: "def".into(),
            kernel_release: "6.18.0".into(),
            online_cpus: "0-1".into(),
            hostname: "h".into(),
            machine: "x86_64".into(),
        };
        let records = [
            Record::Host(host),
            Record::Snapshot(Snapshot {
                reason: SnapshotReason::Rotation,
                encoding: 7,
                timestamp_ns: 9,
                data: vec![1, 2, 3],
            }),
            Record::Loss(Loss {
                kind: LossKind::SeqGap,
                count: Some(3),
                lower_bound: true,
                cpu: Some(1),
                timestamp_ns: 4,
                before: Some((1, 77)),
            }),
            Record::Loss(Loss {
                kind: LossKind::Other(77),
                count: None,
                lower_bound: false,
                cpu: None,
                timestamp_ns: 4,
                before: None,
            }),
            Record::ExecObservation(ExecObservation { encoding: 1, pid: -1, timestamp_ns: 2, data: vec![0xff] }),
            Record::Note(Note { timestamp_ns: 1, text: "héllo".into() }),
            Record::Session(Session { encoding: 1, timestamp_ns: 3, data: b"{}".to_vec() }),
            Record::Clock(Clock { from_monotonic_ns: 7, realtime_minus_monotonic_ns: -5, utc_offset_s: -3600 }),
            Record::Unknown { kind: 999, version: 3, body: vec![9; 5] },
        ];
        for r in &records {
            assert_eq!(&round_trip(r), r);
        }
    }

    #[test]
    fn loss_layout() {
        let mut v = Vec::new();
        Record::Loss(Loss {
            kind: LossKind::Overrun,
            count: Some(0x0102),
            lower_bound: false,
            cpu: Some(3),
            timestamp_ns: 1,
            before: None,
        })
        .emit(&mut v);
        assert_eq!(&v[..12], b"CNLK\x03\x00\x01\x00\x18\x00\x00\x00");
        assert_eq!(&v[12..20], &[2, 0b101, 0, 0, 3, 0, 0, 0]);
        assert_eq!(&v[20..28], &0x0102u64.to_le_bytes());
    }

    #[test]
    fn clock_layout() {
        let mut v = Vec::new();
        let c =
            Clock { from_monotonic_ns: 1, realtime_minus_monotonic_ns: 1_700_000_000_000_000_000, utc_offset_s: 7200 };
        Record::Clock(c).emit(&mut v);
        assert_eq!(&v[..12], b"CNLK\x07\x00\x01\x00\x18\x00\x00\x00");
        assert_eq!(&v[12..20], &1u64.to_le_bytes());
        assert_eq!(&v[20..28], &1_700_000_000_000_000_000i64.to_le_bytes());
        assert_eq!(&v[28..36], &[0x20, 0x1c, 0, 0, 0, 0, 0, 0]);
        assert_eq!(c.local_offset_ns(), 1_700_000_000_000_000_000 + 7_200_000_000_000);
    }

    #[test]
    fn foreign_and_short_data() {
        assert_eq!(Record::parse(b"XXXX"), Ok(None));
        assert_eq!(Record::parse(b""), Ok(None));
        assert!(Record::parse(b"CNLK\x03\x00").is_err());
        assert!(Record::parse(b"CNLK\x03\x00\x01\x00\x18\x00\x00\x00").is_err(), "body missing");
        assert!(Record::parse(b"CNLK\x03\x00\x01\x00\x04\x00\x00\x00abcd").is_err(), "loss body too short");
        let mut loss = Vec::new();
        Record::Loss(Loss {
            kind: LossKind::SeqGap,
            count: None,
            lower_bound: false,
            cpu: None,
            timestamp_ns: 0,
            before: Some((0, 1)),
        })
        .emit(&mut loss);
        loss[8] -= 8; // the flag says a message follows, the body ends before it
        assert!(Record::parse(&loss[..loss.len() - 8]).is_err(), "loss flag without its message");
        let mut host = Vec::new();
        Record::Host(HostInfo::default()).emit(&mut host);
        host[8] -= 1; // the last string now runs past the body
        assert!(Record::parse(&host).is_err());
    }

    #[test]
    fn later_versions_with_more_fields_still_decode() {
        let mut v = Vec::new();
        Record::Note(Note { timestamp_ns: 3, text: String::new() }).emit(&mut v);
        let mut host = Vec::new();
        Record::Host(HostInfo { cpu_count: 4, ..Default::default() }).emit(&mut host);
        host.extend_from_slice(&[1, 2, 3, 4]);
        let len = u32::from_le_bytes(host[8..12].try_into().unwrap()) + 4;
        host[8..12].copy_from_slice(&len.to_le_bytes());
        host[6] = 2;
        assert!(matches!(Record::parse(&host), Ok(Some(Record::Host(HostInfo { cpu_count: 4, .. })))));
    }
}
