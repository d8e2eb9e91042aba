//! Registering sockets with tokio's reactor.

use std::io;
use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;

/// Types whose raw descriptor is that of a [`super::Socket`] they own for their whole life.
///
/// # Safety
/// `as_raw_fd` must return the same open descriptor on every call for as long as the value lives, and the value
/// must keep that descriptor open (not replace or close it) until it is dropped.
pub(crate) unsafe trait OwnsSocket: AsRawFd {}

// SAFETY: a `Socket` owns its `OwnedFd` from open to drop and never replaces it; `as_raw_fd` returns it.
unsafe impl OwnsSocket for super::Socket {}

/// Registers `inner` with the current tokio reactor.
pub(crate) fn register<T: OwnsSocket>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `OwnsSocket` types own an `OwnedFd` (inside a `Socket`) that stays open until they drop, never
    // replace it, and return it from every `as_raw_fd` call; `AsyncFd` owns `inner`, so the descriptor outlives
    // the registration.
    unsafe { AsyncFd::register(inner) }.map_err(io::Error::from)
}
