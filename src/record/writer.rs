//! The writer thread: takes [`Entry`]s from an [`Input`] and writes them with a [`RotatingWriter`], flushing when
//! its input runs dry. It never makes a producer wait; a write error stops the writing (the thread then drains its
//! input so that nothing backs up) and is returned by [`Recording::finish`].
//!
//! **Rotation.** When the limit says a new file is due, a file that must start with the model's state (the
//! process monitor's table) waits for it: the thread asks the producers ([`Input::request_state`]) and holds what
//! comes until the state does. The state says how many datagrams the table had handled; the old file gets those
//! datagrams (with the losses found with them) and every `/proc` answer that came before the state, the new file
//! starts with the clock and the state and gets the rest. So a file replays alone, and the files in order replay
//! as one. The old file may pass the size limit by what comes in that wait (one batch of the monitor).

use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnlink_capture::cooked::{PACKET_KERNEL, PACKET_USER};
use cnlink_capture::{CookedHeader, FileHeader, Record, RotateConfig, RotatingWriter};

use super::{Entry, Input, Recv};

/// What a recording wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Datagrams written.
    pub(crate) packets: u64,
    /// Records written (besides the head of each file).
    pub(crate) records: u64,
    /// Entries the producers could not hand over (their channel was full).
    pub(crate) missed: u64,
    /// The files kept, oldest first.
    pub(crate) files: Vec<PathBuf>,
}

/// A running writer thread.
#[derive(Debug)]
pub(crate) struct Recording {
    handle: JoinHandle<anyhow::Result<Written>>,
}

/// Creates the first file (so that a path that cannot be written fails at once) and starts the writer thread on
/// `input`; it ends when the input is closed.
pub(crate) fn spawn(config: RotateConfig, header: FileHeader, input: impl Input) -> anyhow::Result<Recording> {
    let path = config.file_name(1);
    let writer = RotatingWriter::create(config, header, Instant::now())
        .with_context(|| format!("creating {}", path.display()))?;
    let handle = std::thread::Builder::new()
        .name("cnlink-record".into())
        .spawn(move || {
            Thread { w: writer, written: Written::default(), datagrams: 0, clock: Vec::new(), hold: None }.run(input)
        })
        .context("starting the recording thread")?;
    Ok(Recording { handle })
}

impl Recording {
    /// Waits for the thread to write everything its input held (call it once the producers are gone).
    pub(crate) fn finish(self) -> anyhow::Result<Written> {
        match self.handle.join() {
            Ok(r) => r,
            Err(_) => anyhow::bail!("the recording thread panicked"),
        }
    }
}

/// How long the thread waits for an entry before it ticks (rotation by age, the flush interval).
const IDLE: Duration = Duration::from_millis(100);
/// How long a rotation waits for the state before it asks again, writing what it held to the old file.
const STATE_WAIT: Duration = Duration::from_secs(1);
/// The most entries held while waiting for the state; beyond, they go to the old file.
const HOLD_MAX: usize = 1 << 20;

/// Entries held while a rotation waits for the state.
struct Hold {
    entries: Vec<Entry>,
    /// Datagrams written before the first held one.
    datagrams: u64,
    since: Instant,
}

/// The writer thread's state.
struct Thread {
    w: RotatingWriter,
    written: Written,
    /// Datagrams written so far (in every file).
    datagrams: u64,
    /// Every clock step since the start (the header holds the clock at the start): each later file starts with
    /// them.
    clock: Vec<Record>,
    hold: Option<Hold>,
}

impl Thread {
    fn run(mut self, mut input: impl Input) -> anyhow::Result<Written> {
        let mut failed: Option<io::Error> = None;
        let mut dirty = false;
        loop {
            let entry = match input.recv(if dirty { Duration::ZERO } else { IDLE }) {
                Recv::Entry(e) => e,
                Recv::Idle => {
                    if failed.is_none() {
                        // The input ran dry: hand what was written to the kernel.
                        let now = Instant::now();
                        let r = if dirty { self.w.flush() } else { self.idle(now, &input) };
                        failed = r.err();
                    }
                    dirty = false;
                    continue;
                }
                Recv::Closed => break,
            };
            if failed.is_none() {
                failed = self.take(Instant::now(), entry, &input).err();
                dirty = true;
            }
        }
        self.written.missed = input.missed();
        if failed.is_none() {
            // The producers are gone before the state came: what was held belongs to the current file.
            if let Some(h) = self.hold.take() {
                failed = self.write_all(Instant::now(), h.entries).err();
            }
        }
        if let Some(e) = failed {
            return Err(anyhow::Error::new(e).context("writing the recording"));
        }
        self.written.files = self.w.finish().context("finishing the recording")?;
        Ok(self.written)
    }

    /// Nothing came: rotation by age, the flush interval, and a state that is late.
    fn idle(&mut self, now: Instant, input: &impl Input) -> io::Result<()> {
        match &self.hold {
            Some(h) if now.saturating_duration_since(h.since) >= STATE_WAIT => self.spill(now, input)?,
            Some(_) => {}
            None if self.w.rotation_due(now, 0) => self.start_rotation(now, None, input)?,
            None => {}
        }
        self.w.tick(now)
    }

    /// The state is late, or too much is held: what was held goes to the current file, and the state is asked
    /// for again, for a table that has handled that too.
    fn spill(&mut self, now: Instant, input: &impl Input) -> io::Result<()> {
        let Some(h) = &mut self.hold else { return Ok(()) };
        let held = std::mem::take(&mut h.entries);
        h.since = now;
        self.write_all(now, held)?;
        if let Some(h) = &mut self.hold {
            h.datagrams = self.datagrams;
        }
        input.request_state(self.datagrams);
        Ok(())
    }

    /// One entry: written, held, or the state a rotation waits for.
    fn take(&mut self, now: Instant, entry: Entry, input: &impl Input) -> io::Result<()> {
        if let Entry::Record(c @ Record::Clock(_)) = &entry {
            self.clock.push(c.clone());
        }
        if let Some(h) = &mut self.hold {
            return match entry {
                // A state asked for before a spill is stale: the one asked for since is coming.
                Entry::State { datagrams, .. } if datagrams < h.datagrams => Ok(()),
                Entry::State { record, datagrams } => self.cut(now, record, datagrams),
                e => {
                    h.entries.push(e);
                    if h.entries.len() >= HOLD_MAX {
                        self.spill(now, input)?;
                    }
                    Ok(())
                }
            };
        }
        if self.w.rotation_due(now, entry.size()) {
            return self.start_rotation(now, Some(entry), input);
        }
        self.write(now, &entry)
    }

    /// The limit says a new file is due: start it now, or ask for the state and hold `first` and what follows.
    fn start_rotation(&mut self, now: Instant, first: Option<Entry>, input: &impl Input) -> io::Result<()> {
        if !input.has_state() {
            self.w.rotate(now, &self.clock)?;
            return match first {
                Some(e) => self.write(now, &e),
                None => Ok(()),
            };
        }
        // The state of a table that has handled at least what this file holds.
        input.request_state(self.datagrams);
        let entries = first.into_iter().filter(|e| !matches!(e, Entry::State { .. })).collect();
        self.hold = Some(Hold { entries, datagrams: self.datagrams, since: now });
        Ok(())
    }

    /// The state came: the old file gets the datagrams the table had handled (and the losses found with them)
    /// and every other entry held (they came before the state), the new file starts with the clock and the state,
    /// then gets the rest.
    fn cut(&mut self, now: Instant, state: Record, datagrams: u64) -> io::Result<()> {
        let Some(h) = self.hold.take() else { return Ok(()) };
        let mut old_datagrams = datagrams.saturating_sub(h.datagrams);
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for e in h.entries {
            let is_datagram = matches!(e, Entry::Datagram { .. });
            if is_datagram && old_datagrams == 0 && new.is_empty() {
                // The first datagram the table had not handled: the new file begins here.
                new.push(e);
                continue;
            }
            if !new.is_empty() && e.received() {
                new.push(e);
                continue;
            }
            if is_datagram {
                old_datagrams -= 1;
            }
            old.push(e);
        }
        self.write_all(now, old)?;
        let mut head = self.clock.clone();
        head.push(state);
        self.w.rotate(now, &head)?;
        self.write_all(now, new)
    }

    fn write_all(&mut self, now: Instant, entries: Vec<Entry>) -> io::Result<()> {
        entries.iter().try_for_each(|e| self.write(now, e))
    }

    fn write(&mut self, now: Instant, entry: &Entry) -> io::Result<()> {
        match entry {
            Entry::Datagram { timestamp_ns, protocol, from_kernel, bytes } => {
                self.written.packets += 1;
                self.datagrams += 1;
                let packet_type = if *from_kernel { PACKET_KERNEL } else { PACKET_USER };
                let cooked = CookedHeader { packet_type, ..CookedHeader::for_datagram(*protocol, bytes) };
                self.w.write_packet(now, *timestamp_ns, &cooked, bytes)
            }
            Entry::Record(r) => {
                self.written.records += 1;
                self.w.write_record(now, r)
            }
            // A state no rotation waits for (it came after the producers were asked again).
            Entry::State { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cnlink_capture::{Block, HostInfo, Loss, LossKind, Reader, Record};

    use super::*;
    use crate::record::channel;

    #[test]
    fn writes_what_comes_then_finishes_when_the_producers_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cap.pcapng");
        let header = FileHeader::netlink(&[11]).with_host(HostInfo::collect());
        let (mut tx, rx) = channel(16);
        let rec = spawn(RotateConfig::single(&path), header, rx).unwrap();
        tx.send(
            1,
            Entry::Datagram { timestamp_ns: 5, protocol: 11, from_kernel: true, bytes: Arc::from(vec![1u8; 20]) },
        );
        let loss =
            Loss { kind: LossKind::Overrun, count: None, lower_bound: false, cpu: None, timestamp_ns: 6, before: None };
        tx.send(1, Entry::Record(Record::Loss(loss)));
        drop(tx);
        let w = rec.finish().unwrap();
        assert_eq!((w.packets, w.records, w.missed), (1, 1, 0));
        assert_eq!(w.files, std::slice::from_ref(&path));
        let bytes = std::fs::read(&path).unwrap();
        let blocks: Vec<_> = Reader::new(&bytes).map(|b| b.unwrap()).collect();
        assert!(matches!(blocks[2], Block::Record(Record::Host(_))));
        assert!(matches!(&blocks[3], Block::Packet(p) if p.timestamp_ns == 5 && p.data == [1u8; 20]));
        assert!(matches!(&blocks[4], Block::Record(Record::Loss(l)) if *l == loss));
        assert_eq!(blocks.len(), 5);
    }

    #[test]
    fn a_path_that_cannot_be_written_fails_at_once() {
        let (_tx, rx) = channel(1);
        let config = RotateConfig::single("/nonexistent-dir/cap.pcapng");
        let e = spawn(config, FileHeader::netlink(&[11]), rx).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent-dir/cap.pcapng"), "{e:#}");
    }

    /// A scripted input with a model state: entries in order, then closed; remembers whether the state was
    /// asked for.
    struct Script(std::collections::VecDeque<Entry>, Arc<std::sync::atomic::AtomicBool>);

    impl Input for Script {
        fn recv(&mut self, _: Duration) -> Recv {
            self.0.pop_front().map_or(Recv::Closed, Recv::Entry)
        }
        fn missed(&self) -> u64 {
            0
        }
        fn has_state(&self) -> bool {
            true
        }
        fn request_state(&self, after: u64) {
            self.1.store(after > 0, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn datagram(n: u8) -> Entry {
        Entry::Datagram { timestamp_ns: n.into(), protocol: 11, from_kernel: true, bytes: Arc::from(vec![n; 60]) }
    }

    fn note(text: &str) -> Entry {
        Entry::Record(Record::Note(cnlink_capture::Note { timestamp_ns: 0, text: text.into() }))
    }

    /// What a file holds after its header: datagrams by their first byte, records by a letter.
    fn body(path: &std::path::Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap();
        Reader::new(&bytes)
            .filter_map(|b| match b.unwrap() {
                Block::Packet(p) => Some(format!("d{}", p.data[0])),
                Block::Record(Record::Note(n)) => Some(n.text),
                Block::Record(Record::Loss(l)) => Some(format!("loss{}", l.timestamp_ns)),
                Block::Record(Record::Snapshot(s)) => Some(format!("state{}", s.timestamp_ns)),
                Block::Record(Record::Clock(c)) => Some(format!("clock{}", c.from_monotonic_ns)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_rotation_waits_for_the_state_and_cuts_where_the_table_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rot.pcapng");
        let clock = Record::Clock(cnlink_capture::Clock::default());
        let header = FileHeader::netlink(&[11]).with_record(clock);
        let config =
            RotateConfig { limit: Some(cnlink_capture::RotateLimit::Size(1024)), ..RotateConfig::single(&path) };
        let header_len = {
            let mut w = cnlink_capture::CaptureWriter::new(Vec::new(), &header).unwrap();
            w.flush().unwrap();
            w.bytes_written()
        };
        // Datagrams of 120 bytes in the file: the one that would pass 1024 bytes starts the rotation.
        let fit = (1024 - header_len) / 120;
        let loss = |t| {
            Entry::Record(Record::Loss(Loss {
                kind: LossKind::SeqGap,
                count: Some(1),
                lower_bound: false,
                cpu: None,
                timestamp_ns: t,
                before: None,
            }))
        };
        let state = Record::Snapshot(cnlink_capture::Snapshot {
            reason: cnlink_capture::SnapshotReason::Rotation,
            encoding: 1,
            timestamp_ns: 7,
            data: vec![],
        });
        let mut script: std::collections::VecDeque<Entry> = (0..fit as u8).map(datagram).collect();
        let n = fit as u8;
        // Held from here: the table had handled n + 1 datagrams when it was asked.
        script.extend([
            datagram(n),
            note("answer-before"),
            datagram(n + 1),
            loss(1),
            datagram(n + 2),
            loss(2),
            note("answer-of-the-old-batches"),
            Entry::State { record: state, datagrams: u64::from(n) + 2 },
            note("answer-after"),
            datagram(n + 3),
        ]);
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rec = spawn(config, header, Script(script, asked.clone())).unwrap();
        let w = rec.finish().unwrap();
        assert!(asked.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(w.files.len(), 2);
        let first = body(&w.files[0]);
        let mut want: Vec<String> = (0..=n + 1).map(|i| format!("d{i}")).collect();
        want.insert(n as usize + 1, "answer-before".into());
        want.insert(0, "clock0".into());
        want.extend(["loss1".into(), "answer-of-the-old-batches".into()]);
        assert_eq!(first, want);
        let d = |i: u8| format!("d{i}");
        assert_eq!(
            body(&w.files[1]),
            ["clock0", "state7", &d(n + 2), "loss2", "answer-after", &d(n + 3)],
            "the next file starts with the clock and the state, then what the table had not handled"
        );
    }
}
