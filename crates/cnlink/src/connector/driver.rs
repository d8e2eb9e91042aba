//! What the blocking and the async connector drivers share: opening the socket, joining, leaving and sending,
//! each through the one error mapping; handing a receive's result to the core; a request's error; random numbers.

use std::io;
use std::time::Duration;

use crate::engine::{ClientCore, RequestError};
use crate::proc::{Path, TapEvent, TapSlot};
use crate::socket::{NlAddr, Protocol, RecvBatch, Socket};
use crate::Error;

/// A receive batch: how many datagrams one `recvmmsg` takes, each up to 64 KiB.
pub(crate) fn batch() -> RecvBatch {
    RecvBatch::new(16, 1 << 16)
}

/// What was being done when a system call failed: it decides what the errno means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Open,
    Join,
    Send,
    Other,
}

/// The one mapping from a socket error to the client's error, for both drivers.
pub(crate) fn error(op: Op, protocol: Protocol, e: io::Error) -> Error {
    match (op, protocol, e.raw_os_error()) {
        (Op::Open, Protocol::Connector, Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT)) => Error::NoConnector,
        (Op::Join, Protocol::Connector, Some(libc::EPERM)) => {
            Error::PermissionDenied("joining this group needs CAP_NET_ADMIN (6.6+ allows odd groups)")
        }
        (Op::Join, _, Some(libc::EPERM)) => {
            Error::PermissionDenied("joining a group of this protocol needs CAP_NET_ADMIN")
        }
        (Op::Send, Protocol::Connector, Some(libc::ECONNREFUSED)) => Error::ForeignNamespace("network"),
        _ => Error::Io(e),
    }
}

/// Opens a client socket: kernel-assigned port, credentials on every datagram, non-blocking for the async driver.
pub(crate) fn open(protocol: Protocol, nonblocking: bool) -> Result<Socket, Error> {
    let sock = Socket::open(protocol).map_err(|e| error(Op::Open, protocol, e))?;
    sock.set_passcred(true).map_err(|e| error(Op::Other, protocol, e))?;
    if nonblocking {
        sock.set_nonblocking(true).map_err(|e| error(Op::Other, protocol, e))?;
    }
    Ok(sock)
}

/// Joins multicast group `group`.
pub(crate) fn join(sock: &Socket, group: u32) -> Result<(), Error> {
    sock.add_membership(group).map_err(|e| error(Op::Join, sock.protocol(), e))
}

/// Leaves multicast group `group`.
pub(crate) fn leave(sock: &Socket, group: u32) -> Result<(), Error> {
    sock.drop_membership(group).map_err(|e| error(Op::Other, sock.protocol(), e))
}

/// Sends one datagram to `to`.
pub(crate) fn send(sock: &Socket, datagram: &[u8], to: NlAddr) -> Result<(), Error> {
    sock.send_to(datagram, to).map(drop).map_err(|e| error(Op::Send, sock.protocol(), e))
}

/// Hands the result of one receive to the core: the datagrams, or an overrun (`ENOBUFS`, never an error), each
/// shown to the tap first. Returns false when nothing was ready (`WouldBlock`).
pub(crate) fn absorb(
    core: &mut ClientCore,
    batch: &RecvBatch,
    received: io::Result<usize>,
    tap: &mut TapSlot,
) -> Result<bool, Error> {
    match received {
        Ok(_) => {
            for (meta, d) in batch.iter() {
                tap.show(TapEvent::Received { path: Path::Main, meta, datagram: d });
                core.handle(meta.from, meta.creds, d);
            }
            Ok(true)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            tap.show(TapEvent::Overrun { path: Path::Main });
            core.handle_overrun();
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(Error::Io(e)),
    }
}

/// The error of a request that ended without a reply after waiting up to `timeout`.
pub(crate) fn request_error(e: RequestError, timeout: Duration) -> Error {
    match e {
        RequestError::Untrusted { port, creds } => {
            Error::UntrustedPeer { port, uid: creds.map(|c| c.uid), pid: creds.map(|c| c.pid) }
        }
        _ => Error::Timeout(timeout),
    }
}

/// Four random bytes from the kernel (`getrandom`): an error, never a predictable value, when there are none.
pub(crate) fn random_u32() -> Result<u32, Error> {
    let mut b = [0u8; 4];
    let mut filled = 0;
    while filled < b.len() {
        match rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => return Err(Error::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
    Ok(u32::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_mean_what_the_operation_makes_them_mean() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(matches!(error(Op::Open, Protocol::Connector, e(libc::EPROTONOSUPPORT)), Error::NoConnector));
        assert!(matches!(error(Op::Open, Protocol::Usersock, e(libc::EPROTONOSUPPORT)), Error::Io(_)));
        assert!(matches!(error(Op::Join, Protocol::Connector, e(libc::EPERM)), Error::PermissionDenied(_)));
        assert!(matches!(error(Op::Join, Protocol::Usersock, e(libc::EPERM)), Error::PermissionDenied(_)));
        assert!(matches!(error(Op::Send, Protocol::Connector, e(libc::ECONNREFUSED)), Error::ForeignNamespace(_)));
        assert!(matches!(error(Op::Send, Protocol::Usersock, e(libc::ECONNREFUSED)), Error::Io(_)), "a gone peer");
        assert!(matches!(error(Op::Other, Protocol::Connector, e(libc::EPERM)), Error::Io(_)));
    }

    #[test]
    fn random_numbers_differ() {
        let a: Vec<u32> = (0..8).map(|_| random_u32().unwrap()).collect();
        assert!(a.iter().any(|&x| x != a[0]));
    }
}
