//! `SOL_NETLINK` socket options, which rustix does not wrap.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sets a `SOL_NETLINK` option whose value is a `u32`.
pub(super) fn set_u32(fd: BorrowedFd<'_>, name: libc::c_int, value: u32) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor borrowed for the call; the value pointer and length describe a `u32` on
    // the stack that outlives the call, and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            name,
            (&value as *const u32).cast(),
            core::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads `NETLINK_LIST_MEMBERSHIPS`: the group bitmap as group numbers.
pub(super) fn list_memberships(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut words = [0u32; 8];
    let mut len = core::mem::size_of_val(&words) as libc::socklen_t;
    // SAFETY: `words` is a writable buffer of `len` bytes that outlives the call; the kernel writes at most `len`
    // bytes and stores the needed length back into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_NETLINK,
            libc::NETLINK_LIST_MEMBERSHIPS,
            words.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let filled = (len as usize / 4).min(words.len());
    let mut groups = Vec::new();
    for (w, word) in words[..filled].iter().enumerate() {
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                groups.push(w as u32 * 32 + bit + 1);
            }
        }
    }
    Ok(groups)
}

/// `SO_MEMINFO` (`asm-generic/socket.h`; sparc numbers it differently). libc does not export it.
#[cfg(not(any(target_arch = "sparc", target_arch = "sparc64")))]
const SO_MEMINFO: libc::c_int = 55;
#[cfg(any(target_arch = "sparc", target_arch = "sparc64"))]
const SO_MEMINFO: libc::c_int = 0x0039;

/// Reads `SO_MEMINFO` and returns its `SK_MEMINFO_DROPS` word, or `None` when the kernel's array is too short to
/// hold it.
pub(super) fn meminfo_drops(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    // SK_MEMINFO_VARS is 9 on kernels that have the drop counter; newer kernels may add words after it, which the
    // kernel cuts to the length we pass.
    let mut words = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
    let mut len = core::mem::size_of_val(&words) as libc::socklen_t;
    // SAFETY: `words` is a writable buffer of `len` bytes that outlives the call; the kernel writes at most `len`
    // bytes and stores the length it wrote back into `len`.
    let rc =
        unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_MEMINFO, words.as_mut_ptr().cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let filled = len as usize / 4;
    Ok((filled > libc::SK_MEMINFO_DROPS as usize).then(|| words[libc::SK_MEMINFO_DROPS as usize]))
}
