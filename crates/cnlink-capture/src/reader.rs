//! Readers: over a byte slice ([`Reader`], an iterator) and over any [`Read`] ([`StreamReader`], one block at a
//! time in a reused buffer).
//!
//! Both yield every block before the first damage, then the [`Damage`] (offset and kind), then nothing. A file that
//! ends exactly at a block boundary is whole; an empty input is damage (truncated at 0).

use std::io::{self, Read};

use crate::decode::{Block, Decoder, Frame};
use crate::error::{Damage, DamageKind, ReadError};

/// Reads the blocks of a capture held in memory.
///
/// ```
/// use cnlink_capture::{Block, CaptureWriter, FileHeader, Reader};
///
/// let mut w = CaptureWriter::new(Vec::new(), &FileHeader::netlink(&[11]))?;
/// w.write_datagram(1_700_000_000_123_456_789, 11, &[0u8; 20])?;
/// let bytes = w.into_inner()?;
/// let packets: Vec<u64> = Reader::new(&bytes)
///     .filter_map(|b| match b.unwrap() {
///         Block::Packet(p) => Some(p.timestamp_ns),
///         _ => None,
///     })
///     .collect();
/// assert_eq!(packets, [1_700_000_000_123_456_789]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    decoder: Decoder,
    done: bool,
}

impl<'a> Reader<'a> {
    /// A reader over a whole capture file's bytes.
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0, decoder: Decoder::new(), done: false }
    }

    /// Bytes consumed so far: the offset of the next block.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn damage(&mut self, offset: usize, kind: DamageKind) -> Option<Result<Block<'a>, Damage>> {
        self.done = true;
        Some(Err(Damage { offset: offset as u64, kind }))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Block<'a>, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let rest = &self.data[start..];
        if rest.is_empty() {
            self.done = true;
            return if start == 0 { self.damage(0, DamageKind::Truncated { needed: 12, available: 0 }) } else { None };
        }
        let len = match self.decoder.frame(rest) {
            Err(kind) => return self.damage(start, kind),
            Ok(Frame::Need(n)) => {
                return self.damage(start, DamageKind::Truncated { needed: n as u64, available: rest.len() as u64 })
            }
            Ok(Frame::Block(len)) => len as usize,
        };
        let Some(block) = rest.get(..len) else {
            return self.damage(start, DamageKind::Truncated { needed: len as u64, available: rest.len() as u64 });
        };
        match self.decoder.decode(block) {
            Ok(b) => {
                self.pos += len;
                Some(Ok(b))
            }
            Err(kind) => self.damage(start, kind),
        }
    }
}

impl std::iter::FusedIterator for Reader<'_> {}

/// Reads the blocks of a capture from any [`Read`], holding one block at a time.
///
/// Not an [`Iterator`]: each block borrows the reader's buffer until the next call.
#[derive(Debug)]
pub struct StreamReader<R> {
    inner: R,
    buf: Vec<u8>,
    offset: u64,
    decoder: Decoder,
    done: bool,
}

impl<R: Read> StreamReader<R> {
    /// A reader over `inner` (wrap files in a `BufReader` or not: blocks are read whole).
    pub fn new(inner: R) -> StreamReader<R> {
        StreamReader { inner, buf: Vec::new(), offset: 0, decoder: Decoder::new(), done: false }
    }

    /// Bytes consumed so far: the offset of the next block.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads until `buf` holds `n` bytes or the input ends.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        if self.buf.len() < n {
            let want = (n - self.buf.len()) as u64;
            let mut take = (&mut self.inner).take(want);
            loop {
                match take.read_to_end(&mut self.buf) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The next block; `None` after the last one or after an error.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Block<'_>, ReadError>> {
        if self.done {
            return None;
        }
        match self.read_block() {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        }
        let start = self.offset;
        self.offset += self.buf.len() as u64;
        match self.decoder.decode(&self.buf) {
            Ok(b) => Some(Ok(b)),
            Err(kind) => {
                self.done = true;
                Some(Err(Damage { offset: start, kind }.into()))
            }
        }
    }

    /// Reads one whole block into `buf`; false at a clean end.
    fn read_block(&mut self) -> Result<bool, ReadError> {
        self.buf.clear();
        let offset = self.offset;
        let damage = move |kind| ReadError::Damage(Damage { offset, kind });
        let mut need = 8;
        loop {
            self.fill_to(need)?;
            if self.buf.is_empty() && self.offset > 0 {
                return Ok(false);
            }
            if self.buf.len() < need {
                let available = self.buf.len() as u64;
                let needed = if self.offset == 0 && available == 0 { 12 } else { need as u64 };
                return Err(damage(DamageKind::Truncated { needed, available }));
            }
            match self.decoder.frame(&self.buf).map_err(damage)? {
                Frame::Need(n) => need = n,
                Frame::Block(len) => {
                    self.fill_to(len as usize)?;
                    if self.buf.len() < len as usize {
                        let available = self.buf.len() as u64;
                        return Err(damage(DamageKind::Truncated { needed: u64::from(len), available }));
                    }
                    return Ok(true);
                }
            }
        }
    }
}
