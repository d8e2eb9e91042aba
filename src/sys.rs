//! The binary's few system calls that neither std nor rustix wraps; the only module of the binary with `unsafe`.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::time::Duration;

/// Switches the calling thread to `SCHED_FIFO` at the highest priority. Threads it starts afterwards inherit the
/// policy, so call it before starting any.
pub(crate) fn set_realtime() -> std::io::Result<()> {
    // SAFETY: plain syscalls on the calling thread with a fully initialised `sched_param` that outlives the call.
    let rc = unsafe {
        let max = libc::sched_get_priority_max(libc::SCHED_FIFO);
        let param = libc::sched_param { sched_priority: max };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &param)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The process's own user and system CPU time (`getrusage(RUSAGE_SELF)`).
pub(crate) fn cpu_time() -> (Duration, Duration) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable `rusage`; getrusage only writes into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zero-initialised above (all-zero is a valid `rusage`) and filled by a successful getrusage.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Looks a user up through the system's name service (NSS: `/etc/passwd`, LDAP, sssd, systemd-userdb ...), by
/// name or by uid. Returns the user's (name, uid).
fn getpw(name: Option<&CStr>, uid: u32) -> Option<(Vec<u8>, u32)> {
    let mut buf = vec![0u8; 1024];
    loop {
        let mut pw = std::mem::MaybeUninit::<libc::passwd>::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pw`, `buf` (with its true length) and `found` are valid for writes and outlive the call; `name`
        // is a NUL-terminated string. The function stores strings in `buf` and points `pw`'s fields into it.
        let rc = unsafe {
            match name {
                Some(n) => {
                    libc::getpwnam_r(n.as_ptr(), pw.as_mut_ptr(), buf.as_mut_ptr().cast(), buf.len(), &mut found)
                }
                None => libc::getpwuid_r(uid, pw.as_mut_ptr(), buf.as_mut_ptr().cast(), buf.len(), &mut found),
            }
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() {
            return None;
        }
        // SAFETY: on success `found` points at `pw`, fully initialised, whose `pw_name` is a NUL-terminated string
        // inside `buf`, which is still alive here.
        let (name, uid) = unsafe {
            let pw = &*found;
            (CStr::from_ptr(pw.pw_name).to_bytes().to_vec(), pw.pw_uid)
        };
        return Some((name, uid));
    }
}

/// The uid of the user called `name`, through NSS.
pub(crate) fn user_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    getpw(Some(&name), 0).map(|(_, uid)| uid)
}

/// The name of user `uid`, through NSS (bytes: user names need not be UTF-8).
pub(crate) fn user_name(uid: u32) -> Option<Vec<u8>> {
    getpw(None, uid).map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_through_nss() {
        assert_eq!(user_id("root"), Some(0));
        assert_eq!(user_name(0).as_deref(), Some(&b"root"[..]));
        assert_eq!(user_id("no-such-user-here"), None);
        assert_eq!(user_id("nul\0inside"), None);
    }

    #[test]
    fn cpu_time_advances() {
        let (u, s) = cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (u2, s2) = cpu_time();
        assert!(u2 + s2 > u + s);
    }
}
