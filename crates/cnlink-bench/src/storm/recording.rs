//! Reading a recording while `cnlink record` writes it: the exits of its proc events, block by block, from
//! where the last look stopped (a block not yet whole is looked at next time).
//!
//! The file is pcapng as `docs/capture-format.md` describes it, written in this machine's byte order: each
//! block is `type, total length, body, total length`; an Enhanced Packet Block (type 6) holds, from offset 28,
//! a 16-byte cooked header and the datagram as received.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use cnlink::wire::{CbId, CnMsg, EventData, NlMessages, ProcEvent};

/// Enhanced Packet Block.
const EPB: u32 = 6;
/// Where an EPB's data begins, and the cooked header before the datagram.
const EPB_DATA: usize = 28;
const COOKED: usize = 16;

/// Follows a growing recording.
pub(crate) struct ExitScanner {
    file: File,
    buf: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The process pid of a datagram's exit event, if it is one.
fn exit_of(datagram: &[u8]) -> Option<i32> {
    let nl = NlMessages::new(datagram).next()?.ok()?;
    let cn = CnMsg::new_checked(nl.payload()).ok()?;
    if cn.id() != CbId::PROC {
        return None;
    }
    match ProcEvent::parse(cn.data()).ok()?.data {
        EventData::Exit { process_pid, .. } => Some(process_pid),
        _ => None,
    }
}

impl ExitScanner {
    pub(crate) fn open(path: &Path) -> io::Result<ExitScanner> {
        Ok(ExitScanner { file: File::open(path)?, buf: Vec::new() })
    }

    /// The pids of the exit events in the blocks written since the last call.
    pub(crate) fn exits(&mut self) -> io::Result<Vec<i32>> {
        self.file.read_to_end(&mut self.buf)?;
        let mut out = Vec::new();
        let mut at = 0;
        while let (Some(ty), Some(len)) = (u32_at(&self.buf, at), u32_at(&self.buf, at + 4)) {
            let len = len as usize;
            if len < 12 || at + len > self.buf.len() {
                break;
            }
            let block = &self.buf[at..at + len];
            if ty == EPB {
                let cap = u32_at(block, 20).unwrap_or(0) as usize;
                if let Some(d) = block.get(EPB_DATA + COOKED..EPB_DATA + cap.max(COOKED)) {
                    out.extend(exit_of(d));
                }
            }
            at += len;
        }
        self.buf.drain(..at);
        Ok(out)
    }
}
