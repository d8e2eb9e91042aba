//! [`RotatingWriter`]: captures split into files by size or age, at most N kept, each replayable alone.
//!
//! Without a limit it writes one file at the path given. With one, the files are `STEM-000001.EXT`,
//! `STEM-000002.EXT`, ... next to it; the oldest is deleted when a new one would make more than `max_files`. Every
//! file starts with the Section Header, the interfaces, the host record and the header's records; the caller
//! decides when to start the next one ([`RotatingWriter::rotation_due`]) and what else it starts with
//! ([`RotatingWriter::rotate`]: a [`crate::Snapshot`] with reason [`crate::SnapshotReason::Rotation`], say), so a
//! later file alone can be replayed.
//!
//! Writes go through a `BufWriter`; the buffer is handed to the kernel whenever [`RotatingWriter::flush`] is called
//! (call it when the writer thread's queue runs dry), when `flush_interval` has passed at a write or a
//! [`RotatingWriter::tick`], and when a file is finished (then also `fsync`ed). A process that dies loses only
//! what was not handed over, and the file ends at a block boundary or inside its last block.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::cooked::CookedHeader;
use crate::record::Record;
use crate::writer::{CaptureWriter, FileHeader};

/// When to start a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateLimit {
    /// When the next block would take the file past this many bytes.
    Size(u64),
    /// When the file is this old.
    Duration(Duration),
}

/// A `--rotate` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad rotation limit {0:?}: give a size (100M, 1G, 512K, 4096) or a duration (30s, 10min, 2h, 1d)")]
pub struct BadLimit(pub String);

impl FromStr for RotateLimit {
    type Err = BadLimit;

    /// Sizes: a number of bytes with an optional binary suffix `K`, `M`, `G` (also `KB`, `KiB`, ...; any case).
    /// Durations: a number with `ms`, `s`, `min`, `h` or `d`. A bare `m` is refused as ambiguous.
    fn from_str(s: &str) -> Result<Self, BadLimit> {
        let bad = || BadLimit(s.to_string());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let size = |shift: u32| n.checked_mul(1u64 << shift).map(RotateLimit::Size).ok_or_else(bad);
        let secs = |mul: u64| n.checked_mul(mul).map(|s| RotateLimit::Duration(Duration::from_secs(s))).ok_or_else(bad);
        let limit = match unit {
            "" => RotateLimit::Size(n),
            "ms" => RotateLimit::Duration(Duration::from_millis(n)),
            "s" | "sec" => secs(1)?,
            "min" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            // An upper-case M is MiB; a lone lower-case m could be minutes and is refused.
            "M" => size(20)?,
            u => match u.to_ascii_lowercase().as_str() {
                "b" => RotateLimit::Size(n),
                "k" | "kb" | "kib" => size(10)?,
                "mb" | "mib" => size(20)?,
                "g" | "gb" | "gib" => size(30)?,
                _ => return Err(bad()),
            },
        };
        match limit {
            RotateLimit::Size(0) => Err(bad()),
            RotateLimit::Duration(d) if d.is_zero() => Err(bad()),
            l => Ok(l),
        }
    }
}

impl fmt::Display for RotateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RotateLimit::Size(n) => write!(f, "{n} bytes"),
            RotateLimit::Duration(d) => write!(f, "{d:?}"),
        }
    }
}

/// Where and how to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateConfig {
    /// The capture's path; with a limit, the files are named after it with a sequence number.
    pub path: PathBuf,
    /// When to start a new file; `None` writes one file.
    pub limit: Option<RotateLimit>,
    /// Files to keep (the newest); `None` keeps all.
    pub max_files: Option<usize>,
    /// Longest time written blocks may wait in the buffer (at writes and ticks); zero flushes every block.
    pub flush_interval: Duration,
    /// Size of the write buffer.
    pub buffer: usize,
}

impl RotateConfig {
    /// One file at `path`, flushed every 200 ms at the latest, with a 64 KiB buffer.
    pub fn single(path: impl Into<PathBuf>) -> RotateConfig {
        RotateConfig {
            path: path.into(),
            limit: None,
            max_files: None,
            flush_interval: Duration::from_millis(200),
            buffer: 64 << 10,
        }
    }

    /// The name of file number `seq` (from 1): `STEM-000001.EXT`, or the path itself without a limit.
    pub fn file_name(&self, seq: u64) -> PathBuf {
        if self.limit.is_none() {
            return self.path.clone();
        }
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}-{seq:06}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{seq:06}"),
        };
        self.path.with_file_name(name)
    }
}

/// Writes a capture into one file or a bounded series of files.
///
/// Without a limit it writes one file at the path given. With one, the files are `STEM-000001.EXT`,
/// `STEM-000002.EXT`, ... next to it; the oldest is deleted when a new one would make more than `max_files`. Every
/// file starts with the Section Header, the interfaces, the host record and the header's records. Writing never
/// starts a new file by itself: the caller asks [`RotatingWriter::rotation_due`] before each write (and when
/// idle) and calls [`RotatingWriter::rotate`] with what the next file must start with to be replayed alone.
///
/// Writes are buffered; the buffer is handed to the kernel by [`RotatingWriter::flush`] (call it when the writer
/// thread's queue runs dry), when `flush_interval` has passed at a write or a [`RotatingWriter::tick`], and when a
/// file is finished (then also `fsync`ed). Time comes from the caller (`now`), never from a clock read here.
pub struct RotatingWriter {
    config: RotateConfig,
    header: FileHeader,
    current: CaptureWriter<BufWriter<File>>,
    /// Bytes of the current file's head (header blocks and the records it was started with): the size limit
    /// counts what follows, and a file holding only its head is never rotated.
    header_bytes: u64,
    seq: u64,
    opened: Instant,
    last_flush: Instant,
    files: VecDeque<PathBuf>,
}

impl fmt::Debug for RotatingWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatingWriter").field("config", &self.config).field("seq", &self.seq).finish()
    }
}

impl RotatingWriter {
    /// Creates the first file and writes its header blocks. `now` is the time rotation by duration counts from.
    pub fn create(config: RotateConfig, header: FileHeader, now: Instant) -> io::Result<Self> {
        let path = config.file_name(1);
        let current = open(&config, &path, &header)?;
        let header_bytes = current.bytes_written();
        let mut w = RotatingWriter {
            config,
            header,
            current,
            header_bytes,
            seq: 1,
            opened: now,
            last_flush: now,
            files: VecDeque::from([path]),
        };
        w.current.flush()?;
        w.trim()?;
        Ok(w)
    }

    /// Writes a datagram (see [`CaptureWriter::write_datagram`]).
    pub fn write_datagram(
        &mut self,
        now: Instant,
        timestamp_ns: u64,
        protocol: u16,
        datagram: &[u8],
    ) -> io::Result<()> {
        self.current.write_packet(timestamp_ns, &CookedHeader::for_datagram(protocol, datagram), datagram)?;
        self.after(now)
    }

    /// Writes a packet with the cooked header given (see [`CaptureWriter::write_packet`]).
    pub fn write_packet(
        &mut self,
        now: Instant,
        timestamp_ns: u64,
        cooked: &CookedHeader,
        data: &[u8],
    ) -> io::Result<()> {
        self.current.write_packet(timestamp_ns, cooked, data)?;
        self.after(now)
    }

    /// Writes a record.
    pub fn write_record(&mut self, now: Instant, record: &Record) -> io::Result<()> {
        self.current.write_record(record)?;
        self.after(now)
    }

    /// Flushes by interval without writing anything.
    pub fn tick(&mut self, now: Instant) -> io::Result<()> {
        self.after(now)
    }

    /// Hands everything written to the kernel.
    pub fn flush(&mut self) -> io::Result<()> {
        self.current.flush()
    }

    /// Flushes and syncs the current file; returns the files kept, oldest first.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.current.flush()?;
        self.current.get_mut().get_ref().sync_data()?;
        Ok(self.files.into())
    }

    /// The files kept so far, oldest first; the last is being written.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(PathBuf::as_path)
    }

    /// Bytes written to the current file.
    pub fn current_bytes(&self) -> u64 {
        self.current.bytes_written()
    }

    /// Whether the limit says to start a new file before writing about `next` more bytes (0 when idle): what
    /// follows the file's head (its header blocks and the records it was started with) would pass the size
    /// limit, or the file is old enough. A file holding only its head is never due.
    pub fn rotation_due(&self, now: Instant, next: u64) -> bool {
        let used = self.current.bytes_written();
        match self.config.limit {
            None => false,
            Some(_) if used <= self.header_bytes => false,
            Some(RotateLimit::Size(max)) => used - self.header_bytes + next > max,
            Some(RotateLimit::Duration(d)) => now.saturating_duration_since(self.opened) >= d,
        }
    }

    fn after(&mut self, now: Instant) -> io::Result<()> {
        if now.saturating_duration_since(self.last_flush) >= self.config.flush_interval {
            self.current.flush()?;
            self.last_flush = now;
        }
        Ok(())
    }

    /// Finishes the current file (flushed and synced) and starts the next one, deleting the oldest beyond
    /// `max_files`; the new file starts with the header blocks, then `head` (what it needs to be replayed alone:
    /// the state of the caller's model when it starts). Without a limit, the file goes on.
    pub fn rotate(&mut self, now: Instant, head: &[Record]) -> io::Result<()> {
        if self.config.limit.is_none() {
            return Ok(());
        }
        self.current.flush()?;
        self.current.get_mut().get_ref().sync_data()?;
        let seq = self.seq + 1;
        let path = self.config.file_name(seq);
        let mut next = open(&self.config, &path, &self.header)?;
        for r in head {
            next.write_record(r)?;
        }
        next.flush()?;
        self.header_bytes = next.bytes_written();
        self.current = next;
        self.seq = seq;
        self.opened = now;
        self.last_flush = now;
        self.files.push_back(path);
        self.trim()
    }

    /// Deletes the oldest files beyond `max_files`.
    fn trim(&mut self) -> io::Result<()> {
        let keep = self.config.max_files.unwrap_or(usize::MAX).max(1);
        while self.files.len() > keep {
            if let Some(old) = self.files.pop_front() {
                match std::fs::remove_file(&old) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

fn open(config: &RotateConfig, path: &Path, header: &FileHeader) -> io::Result<CaptureWriter<BufWriter<File>>> {
    let file = File::create(path)?;
    CaptureWriter::new(BufWriter::with_capacity(config.buffer.max(4096), file), header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        let ok = |s: &str| s.parse::<RotateLimit>().unwrap();
        assert_eq!(ok("4096"), RotateLimit::Size(4096));
        assert_eq!(ok("100M"), RotateLimit::Size(100 << 20));
        assert_eq!(ok("100MiB"), RotateLimit::Size(100 << 20));
        assert_eq!(ok("2g"), RotateLimit::Size(2 << 30));
        assert_eq!(ok("512k"), RotateLimit::Size(512 << 10));
        assert_eq!(ok("30s"), RotateLimit::Duration(Duration::from_secs(30)));
        assert_eq!(ok("10min"), RotateLimit::Duration(Duration::from_secs(600)));
        assert_eq!(ok("2h"), RotateLimit::Duration(Duration::from_secs(7200)));
        assert_eq!(ok("1d"), RotateLimit::Duration(Duration::from_secs(86_400)));
        assert_eq!(ok("250ms"), RotateLimit::Duration(Duration::from_millis(250)));
        for bad in ["", "m", "5m", "0", "0s", "x", "-1", "1.5G", "99999999999999999999", "20000000000000G"] {
            assert!(bad.parse::<RotateLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn file_names_carry_a_sequence_number() {
        let mut c = RotateConfig::single("/tmp/cap.pcapng");
        assert_eq!(c.file_name(3), Path::new("/tmp/cap.pcapng"));
        c.limit = Some(RotateLimit::Size(1 << 20));
        assert_eq!(c.file_name(3), Path::new("/tmp/cap-000003.pcapng"));
        c.path = "/tmp/cap".into();
        assert_eq!(c.file_name(12), Path::new("/tmp/cap-000012"));
    }
}
