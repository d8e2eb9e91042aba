//! A LIST reply body: the registered ids, a page at a time.
//!
//! ```text
//! offset size field
//!      0    4 total   u32  ids registered now
//!      4    4 count   u32  entries in this page
//!      8 52*count entries, each:
//!         0    4 idx    u32
//!         4    4 val    u32
//!         8    4 group  u32
//!        12    4 port   u32  the owner's port; 0 inside the daemon
//!        16    4 uid    u32  the registrant's uid; 0 inside the daemon
//!        20   32 name        NUL-padded, at most 31 bytes
//! ```

use cnlink::wire::bytes::{need, put_u32, u32_at};
use cnlink::wire::{CbId, WireError};

use super::op::{name_field, name_from, NAME_LEN};
use super::CtlError;

/// Size of the page header (total, count).
pub const LIST_HDRLEN: usize = 8;
/// Size of one LIST entry.
pub const LIST_ENTRY_LEN: usize = 20 + NAME_LEN;
/// LIST entries per reply page.
pub const LIST_PAGE: usize = 256;

mod field {
    use core::ops::Range;
    pub(super) const TOTAL: Range<usize> = 0..4;
    pub(super) const COUNT: Range<usize> = 4..8;
    /// Within one entry.
    pub(super) const IDX: Range<usize> = 0..4;
    pub(super) const VAL: Range<usize> = 4..8;
    pub(super) const GROUP: Range<usize> = 8..12;
    pub(super) const PORT: Range<usize> = 12..16;
    pub(super) const UID: Range<usize> = 16..20;
    pub(super) const NAME: Range<usize> = 20..20 + super::NAME_LEN;
}

/// One registered id as LIST reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The id.
    pub id: CbId,
    /// Its group (`idx`).
    pub group: u32,
    /// The owner's port id; 0 for a callback inside the daemon.
    pub port: u32,
    /// The owner's uid (0 inside the daemon).
    pub uid: u32,
    /// The name.
    pub name: String,
}

impl ListEntry {
    fn parse(e: &[u8]) -> ListEntry {
        ListEntry {
            id: CbId::new(u32_at(e, field::IDX), u32_at(e, field::VAL)),
            group: u32_at(e, field::GROUP),
            port: u32_at(e, field::PORT),
            uid: u32_at(e, field::UID),
            name: name_from(&e[field::NAME]),
        }
    }

    fn emit(&self, e: &mut [u8]) {
        put_u32(e, field::IDX, self.id.idx);
        put_u32(e, field::VAL, self.id.val);
        put_u32(e, field::GROUP, self.group);
        put_u32(e, field::PORT, self.port);
        put_u32(e, field::UID, self.uid);
        e[field::NAME].copy_from_slice(&name_field(&self.name));
    }
}

/// A LIST reply body: total number of entries, then a page of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// How many ids are registered in all.
    pub total: u32,
    /// This page's entries.
    pub entries: Vec<ListEntry>,
}

impl ListPage {
    /// The encoded size.
    pub fn buffer_len(&self) -> usize {
        LIST_HDRLEN + self.entries.len() * LIST_ENTRY_LEN
    }

    /// Writes the page into the first [`ListPage::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        need(buf, self.buffer_len())?;
        put_u32(buf, field::TOTAL, self.total);
        put_u32(buf, field::COUNT, self.entries.len() as u32);
        for (e, b) in self.entries.iter().zip(buf[LIST_HDRLEN..].chunks_exact_mut(LIST_ENTRY_LEN)) {
            e.emit(b);
        }
        Ok(())
    }

    /// Encodes: `u32 total, u32 count`, then `count` entries of `idx, val, group, port, uid, name[32]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v).expect("sized by buffer_len");
        v
    }

    /// Decodes a LIST reply body.
    pub fn parse(b: &[u8]) -> Result<ListPage, CtlError> {
        need(b, LIST_HDRLEN)?;
        let count = u32_at(b, field::COUNT) as usize;
        let expected = LIST_HDRLEN.saturating_add(count.saturating_mul(LIST_ENTRY_LEN));
        if b.len() != expected {
            return Err(WireError::LengthMismatch { claimed: b.len(), expected }.into());
        }
        let entries = b[LIST_HDRLEN..].chunks_exact(LIST_ENTRY_LEN).map(ListEntry::parse).collect();
        Ok(ListPage { total: u32_at(b, field::TOTAL), entries })
    }
}
