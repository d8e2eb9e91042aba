//! Receiving: one datagram per `recvmsg`, or a batch per `recvmmsg`, with sender address and credentials.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{Credentials, NlAddr, RecvMeta};

/// Control-message space per datagram: room for one `SCM_CREDENTIALS` (`CMSG_SPACE(12)` = 32) and more, in
/// `u64`s so that the buffer is aligned for `cmsghdr`.
const CONTROL_WORDS: usize = 8;

/// Reusable storage for receiving many datagrams in one `recvmmsg` call.
///
/// Holds `slots` buffers of `slot_size` bytes; after [`super::Socket::recv_batch`], [`RecvBatch::iter`] gives the
/// datagrams received, in order. Everything `recvmmsg` needs (the `iovec`s and `mmsghdr`s) is built once here, so
/// a receive allocates nothing.
pub struct RecvBatch {
    slot_size: usize,
    storage: Vec<u8>,
    addrs: Vec<libc::sockaddr_nl>,
    /// Control-message space per slot; written by the kernel through `hdrs`.
    #[allow(dead_code)]
    control: Vec<u64>,
    /// One `iovec` per slot, pointing into `storage`; read by the kernel through `hdrs`.
    #[allow(dead_code)]
    iovs: Vec<libc::iovec>,
    /// One header per slot, pointing at its `iovs` entry, `addrs` entry and `control` words.
    hdrs: Vec<libc::mmsghdr>,
    metas: Vec<RecvMeta>,
}

// SAFETY: the raw pointers inside `iovs` and `hdrs` point only into heap buffers this `RecvBatch` owns (`storage`,
// `addrs`, `control`, `iovs`), which are never resized, so they move with it to another thread and stay valid.
// They are dereferenced only by `recvmmsg` through `&mut self`.
unsafe impl Send for RecvBatch {}
// SAFETY: through `&RecvBatch` only `storage` and `metas` are read; the pointer fields are used only through
// `&mut self`.
unsafe impl Sync for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.capacity())
            .field("slot_size", &self.slot_size)
            .field("received", &self.metas.len())
            .finish()
    }
}

impl RecvBatch {
    /// Storage for `slots` datagrams of up to `slot_size` bytes each (at least one of each).
    ///
    /// # Panics
    /// When `slots * slot_size` overflows `usize`.
    pub fn new(slots: usize, slot_size: usize) -> Self {
        let slots = slots.max(1);
        let slot_size = slot_size.max(1);
        let total = slots.checked_mul(slot_size).expect("RecvBatch: slots * slot_size overflows usize");
        let mut storage = vec![0u8; total];
        // SAFETY: `sockaddr_nl` is plain integers; all-zero is a valid value.
        let mut addrs = vec![unsafe { core::mem::zeroed::<libc::sockaddr_nl>() }; slots];
        let mut control = vec![0u64; slots * CONTROL_WORDS];
        let base = storage.as_mut_ptr();
        let mut iovs: Vec<libc::iovec> = (0..slots)
            // SAFETY: `i * slot_size < total`, so the pointer stays inside `storage`.
            .map(|i| libc::iovec { iov_base: unsafe { base.add(i * slot_size) }.cast(), iov_len: slot_size })
            .collect();
        let (iov, addr, ctl) = (iovs.as_mut_ptr(), addrs.as_mut_ptr(), control.as_mut_ptr());
        let hdrs = (0..slots)
            .map(|i| {
                // SAFETY: `i < slots` indexes `iovs` and `addrs` (slots entries) and `control` (slots *
                // CONTROL_WORDS words).
                let (iov, addr, ctl) = unsafe { (iov.add(i), addr.add(i), ctl.add(i * CONTROL_WORDS)) };
                libc::mmsghdr { msg_hdr: msghdr(iov, addr, ctl), msg_len: 0 }
            })
            .collect();
        RecvBatch { slot_size, storage, addrs, control, iovs, hdrs, metas: Vec::with_capacity(slots) }
    }

    /// How many datagrams one call can receive.
    pub fn capacity(&self) -> usize {
        self.addrs.len()
    }

    /// How many datagrams the last call received.
    pub fn len(&self) -> usize {
        self.metas.len()
    }

    /// True when the last call received nothing.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// The datagrams of the last call with what the kernel said about each.
    pub fn iter(&self) -> impl Iterator<Item = (&RecvMeta, &[u8])> + '_ {
        self.metas.iter().enumerate().map(|(i, m)| (m, &self.storage[i * self.slot_size..][..m.len]))
    }

    pub(super) fn fill(&mut self, fd: BorrowedFd<'_>, wait: bool) -> io::Result<usize> {
        self.metas.clear();
        // The kernel rewrote the lengths and flags of the headers it filled last time: reset them all.
        for h in &mut self.hdrs {
            reset(&mut h.msg_hdr);
            h.msg_len = 0;
        }
        let n = self.hdrs.len();
        let flags = if wait { libc::MSG_WAITFORONE } else { libc::MSG_DONTWAIT };
        let got = loop {
            // SAFETY: every `mmsghdr` points at live, writable buffers owned by `self` (see `new`), which outlive
            // the call; `n` is the length of `hdrs`; the timeout pointer may be null.
            let rc = unsafe {
                libc::recvmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as _, flags as _, core::ptr::null_mut())
            };
            if rc >= 0 {
                break rc as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        for h in &self.hdrs[..got] {
            // SAFETY: the kernel filled this header's name and control buffers during the call above.
            self.metas.push(unsafe { finish(&h.msg_hdr, h.msg_len as usize) });
        }
        Ok(got)
    }
}

/// A `msghdr` for one datagram into `iov`, with the sender address in `addr` and control messages in `ctl`.
fn msghdr(iov: *mut libc::iovec, addr: *mut libc::sockaddr_nl, ctl: *mut u64) -> libc::msghdr {
    // SAFETY: `msghdr` is plain integers and pointers; all-zero is a valid (empty) value.
    let mut h: libc::msghdr = unsafe { core::mem::zeroed() };
    h.msg_name = addr.cast();
    h.msg_iov = iov;
    h.msg_iovlen = 1;
    h.msg_control = ctl.cast();
    reset(&mut h);
    h
}

/// Sets the lengths and flags the kernel rewrites on every receive back to the buffers' full sizes.
fn reset(h: &mut libc::msghdr) {
    h.msg_namelen = core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // `size_t` on glibc, `socklen_t` on musl.
    h.msg_controllen = (CONTROL_WORDS * 8) as _;
    h.msg_flags = 0;
}

/// Reads what the kernel reported in `h` after a receive of `len` bytes (never more than the buffer: netlink
/// cuts and sets `MSG_TRUNC`).
///
/// # Safety
/// `h` must have been filled by a successful `recvmsg`/`recvmmsg`: its name points at a `sockaddr_nl` and its
/// control buffer holds `msg_controllen` valid bytes.
pub(super) unsafe fn finish(h: &libc::msghdr, len: usize) -> RecvMeta {
    // SAFETY: the caller guarantees `msg_name` points at a live `sockaddr_nl`.
    let addr = unsafe { &*(h.msg_name as *const libc::sockaddr_nl) };
    let mut creds = None;
    // SAFETY: the control buffer and its length come from the kernel's fill of `h`; the CMSG_* helpers stay
    // inside `msg_controllen` and return null at the end.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET
                && (*c).cmsg_type == libc::SCM_CREDENTIALS
                && (*c).cmsg_len as usize >= libc::CMSG_LEN(core::mem::size_of::<libc::ucred>() as u32) as usize
            {
                let u = core::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::ucred);
                creds = Some(Credentials { pid: u.pid, uid: u.uid, gid: u.gid });
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    RecvMeta {
        len,
        truncated: h.msg_flags & libc::MSG_TRUNC != 0,
        control_truncated: h.msg_flags & libc::MSG_CTRUNC != 0,
        from: NlAddr { port: addr.nl_pid, groups: addr.nl_groups },
        creds,
    }
}

/// Receives one datagram into `buf` with `recvmsg`.
pub(super) fn recv_one(fd: BorrowedFd<'_>, buf: &mut [u8], flags: libc::c_int) -> io::Result<RecvMeta> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: `sockaddr_nl` is plain integers; all-zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    let mut ctl = [0u64; CONTROL_WORDS];
    let mut h = msghdr(&mut iov, &mut addr, ctl.as_mut_ptr());
    loop {
        // SAFETY: `h` points at `iov` (describing `buf`), `addr` and `ctl`, all live and writable for the call.
        let rc = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut h, flags) };
        if rc >= 0 {
            // SAFETY: `recvmsg` succeeded, so it filled `h`'s name and control buffers.
            return Ok(unsafe { finish(&h, rc as usize) });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
        reset(&mut h);
    }
}
