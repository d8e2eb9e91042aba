//! The writer thread: takes [`Entry`]s from an [`Input`] and writes them with a [`RotatingWriter`], flushing when
//! its input runs dry. It never makes a producer wait; a write error stops the writing (the thread then drains its
//! input so that nothing backs up) and is returned by [`Recording::finish`].

use std::io;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use cnlink_capture::cooked::{PACKET_KERNEL, PACKET_USER};
use cnlink_capture::{CookedHeader, FileHeader, RotateConfig, RotatingWriter, StateFn};

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
pub(crate) fn spawn(
    config: RotateConfig,
    header: FileHeader,
    state: StateFn,
    input: impl Input,
) -> anyhow::Result<Recording> {
    let path = config.file_name(1);
    let writer = RotatingWriter::create(config, header, state, Instant::now())
        .with_context(|| format!("creating {}", path.display()))?;
    let handle = std::thread::Builder::new()
        .name("cnlink-record".into())
        .spawn(move || run(writer, input))
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

fn run(mut w: RotatingWriter, mut input: impl Input) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut failed: Option<io::Error> = None;
    let mut dirty = false;
    loop {
        let entry = match input.recv(if dirty { Duration::ZERO } else { IDLE }) {
            Recv::Entry(e) => e,
            Recv::Idle => {
                if failed.is_none() {
                    // The input ran dry: hand what was written to the kernel.
                    let r = if dirty { w.flush() } else { w.tick(Instant::now()) };
                    failed = r.err();
                }
                dirty = false;
                continue;
            }
            Recv::Closed => break,
        };
        if failed.is_some() {
            continue;
        }
        let now = Instant::now();
        let r = match &entry {
            Entry::Datagram { timestamp_ns, protocol, from_kernel, bytes } => {
                written.packets += 1;
                let packet_type = if *from_kernel { PACKET_KERNEL } else { PACKET_USER };
                let cooked = CookedHeader { packet_type, ..CookedHeader::for_datagram(*protocol, bytes) };
                w.write_packet(now, *timestamp_ns, &cooked, bytes)
            }
            Entry::Record(r) => {
                written.records += 1;
                w.write_record(now, r)
            }
        };
        failed = r.err();
        dirty = true;
    }
    written.missed = input.missed();
    if let Some(e) = failed {
        return Err(anyhow::Error::new(e).context("writing the recording"));
    }
    written.files = w.finish().context("finishing the recording")?;
    Ok(written)
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
        let rec = spawn(RotateConfig::single(&path), header, Box::new(|| None), rx).unwrap();
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
        let e = spawn(config, FileHeader::netlink(&[11]), Box::new(|| None), rx).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent-dir/cap.pcapng"), "{e:#}");
    }
}
