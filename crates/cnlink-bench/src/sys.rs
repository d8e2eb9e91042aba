//! The benchmark's system calls that rustix does not wrap (`fork` for a bare child, `wait4` for its usage);
//! the only module of the crate with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;

/// The `execv` arguments of `/bin/true`, built before forking so that the child does not allocate.
pub(crate) struct ExecArgs {
    path: CString,
    argv: [*const libc::c_char; 2],
}

// SAFETY: `argv` holds a pointer into `path` (owned, never mutated) and a null; sharing read-only access across
// threads is sound.
unsafe impl Sync for ExecArgs {}

impl ExecArgs {
    pub(crate) fn new() -> io::Result<Self> {
        let path = CString::new("/bin/true").map_err(io::Error::other)?;
        let mut args = ExecArgs { path, argv: [std::ptr::null(); 2] };
        args.argv[0] = args.path.as_ptr();
        Ok(args)
    }
}

/// Forks a child that execs `exec` (or exits 0 at once when `None`); returns its pid in the parent.
pub(crate) fn fork_child(exec: Option<&ExecArgs>) -> io::Result<i32> {
    // SAFETY: fork has no memory-safety preconditions; the child below only calls async-signal-safe functions
    // (execv, _exit) and never returns into Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        if let Some(exe) = exec {
            // SAFETY: `path` is a valid NUL-terminated string and `argv` a null-terminated array of such strings,
            // both alive for the call; execv only returns on failure.
            unsafe { libc::execv(exe.path.as_ptr(), exe.argv.as_ptr()) };
            // SAFETY: _exit is async-signal-safe and ends the child without running Rust code.
            unsafe { libc::_exit(127) };
        }
        // SAFETY: as above.
        unsafe { libc::_exit(0) };
    }
    Ok(pid)
}

/// `wait4` on `pid`: its raw wait status and resource usage, or `None` when it has not exited and `block` is
/// false.
pub(crate) fn wait4(pid: i32, block: bool) -> io::Result<Option<(i32, libc::rusage)>> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `status` and `ru` are valid, writable locals for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        match r {
            0 => return Ok(None),
            r if r == pid => return Ok(Some((status, ru))),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
