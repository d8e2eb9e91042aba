//! Netlink sockets: the only module with syscalls and `unsafe`.
//!
//! [`Socket`] opens `NETLINK_CONNECTOR` (or `NETLINK_USERSOCK`, for the userspace bus) datagram sockets with a
//! kernel-assigned port id and `SOCK_CLOEXEC`, joins and leaves multicast groups by number, sizes the receive
//! buffer, and receives one datagram or a batch of them per syscall (`recvmmsg`), with the sender's address and,
//! when asked, its kernel-verified credentials. [`Socket::drops`] reads the kernel's count of datagrams dropped at
//! the socket (`SO_MEMINFO`).
//!
//! What rustix offers is used through rustix; the netlink socket options, `SO_MEMINFO` and `recvmmsg` are not
//! there, so they are small libc calls below, each with its safety argument.
#![allow(unsafe_code)]

#[cfg(feature = "tokio")]
pub(crate) mod async_fd;
mod batch;
mod options;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, SocketFlags, SocketType};

pub use crate::wire::NlAddr;
pub use batch::RecvBatch;

/// The netlink protocol a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `NETLINK_CONNECTOR` (11): the kernel connector.
    Connector,
    /// `NETLINK_USERSOCK` (2): userspace to userspace; the transport of the userspace bus.
    Usersock,
    /// Any other protocol number.
    Other(u32),
}

impl Protocol {
    /// The protocol number.
    pub const fn number(self) -> u32 {
        match self {
            Protocol::Connector => libc::NETLINK_CONNECTOR as u32,
            Protocol::Usersock => libc::NETLINK_USERSOCK as u32,
            Protocol::Other(n) => n,
        }
    }
}

/// A sender's credentials as the kernel recorded them (`struct ucred`, from `SCM_CREDENTIALS`).
#[doc(alias = "ucred")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// Process id (the sender's thread group id).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What `recvmsg` said about one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecvMeta {
    /// Bytes of the datagram in the buffer.
    pub len: usize,
    /// The datagram was longer than the buffer and was cut (`MSG_TRUNC`).
    pub truncated: bool,
    /// Control messages did not fit and were cut (`MSG_CTRUNC`): `creds` may be missing although the sender's
    /// credentials were sent.
    #[doc(alias = "MSG_CTRUNC")]
    pub control_truncated: bool,
    /// The sender: port 0 is the kernel; `groups` is the multicast group's bit, or 0 for unicast.
    pub from: NlAddr,
    /// The sender's credentials, when [`Socket::set_passcred`] is on.
    pub creds: Option<Credentials>,
}

/// A netlink datagram socket. Owns its descriptor; not `Clone`.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    protocol: Protocol,
    /// The port id bound at open: a bound netlink socket keeps its port id for life, so it is read once.
    port: u32,
}

impl Socket {
    /// Opens a socket bound to a kernel-assigned port id, so one process can hold many.
    pub fn open(protocol: Protocol) -> io::Result<Socket> {
        Self::open_at(protocol, 0)
    }

    /// Opens a socket bound to `port` (0 lets the kernel choose).
    pub fn open_at(protocol: Protocol, port: u32) -> io::Result<Socket> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(rustix::net::Protocol::from_raw(
                core::num::NonZeroU32::new(protocol.number())
                    .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
            )),
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(port, 0))?;
        // The bind above assigned the port (the kernel's choice when `port` is 0); it cannot change afterwards
        // (a second bind to another port fails with EINVAL), so it is read once here, not on every send.
        let addr = rustix::net::getsockname(&fd)?;
        let nl = SocketAddrNetlink::try_from(addr).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        Ok(Socket { fd, protocol, port: nl.pid() })
    }

    /// The protocol this socket speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The port id the socket is bound to (read with `getsockname` when it was opened; no system call here).
    #[doc(alias = "port_id")]
    pub fn port(&self) -> u32 {
        self.port
    }

    /// A second descriptor for the same socket (`F_DUPFD_CLOEXEC`): sends through it come from this socket (same
    /// port id, same kernel-side state), and the socket lives until both are closed.
    pub fn try_clone(&self) -> io::Result<Socket> {
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)?;
        Ok(Socket { fd, protocol: self.protocol, port: self.port })
    }

    /// Joins multicast group `group` (a number, 1..=32 on the connector; `NETLINK_ADD_MEMBERSHIP`).
    #[doc(alias = "NETLINK_ADD_MEMBERSHIP")]
    pub fn add_membership(&self, group: u32) -> io::Result<()> {
        options::set_u32(self.fd.as_fd(), libc::NETLINK_ADD_MEMBERSHIP, group)
    }

    /// Leaves multicast group `group` (`NETLINK_DROP_MEMBERSHIP`).
    #[doc(alias = "NETLINK_DROP_MEMBERSHIP")]
    pub fn drop_membership(&self, group: u32) -> io::Result<()> {
        options::set_u32(self.fd.as_fd(), libc::NETLINK_DROP_MEMBERSHIP, group)
    }

    /// The groups this socket is a member of, ascending (`NETLINK_LIST_MEMBERSHIPS`).
    #[doc(alias = "NETLINK_LIST_MEMBERSHIPS")]
    pub fn memberships(&self) -> io::Result<Vec<u32>> {
        options::list_memberships(self.fd.as_fd())
    }

    /// Asks for a receive buffer of `bytes`: `SO_RCVBUFFORCE` when privileged, else `SO_RCVBUF` (capped by
    /// `net.core.rmem_max`). Returns the size the kernel granted (it doubles the request for bookkeeping).
    pub fn set_recv_buffer(&self, bytes: usize) -> io::Result<usize> {
        if rustix::net::sockopt::set_socket_recv_buffer_size_force(&self.fd, bytes).is_err() {
            rustix::net::sockopt::set_socket_recv_buffer_size(&self.fd, bytes)?;
        }
        self.recv_buffer()
    }

    /// The current receive buffer size (`SO_RCVBUF`).
    pub fn recv_buffer(&self) -> io::Result<usize> {
        Ok(rustix::net::sockopt::socket_recv_buffer_size(&self.fd)?)
    }

    /// Switches non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        Ok(rustix::io::ioctl_fionbio(&self.fd, on)?)
    }

    /// Attaches the sender's credentials to every received datagram (`SO_PASSCRED`).
    pub fn set_passcred(&self, on: bool) -> io::Result<()> {
        Ok(rustix::net::sockopt::set_socket_passcred(&self.fd, on)?)
    }

    /// Bounds how long a blocking receive waits (`SO_RCVTIMEO`; `None`: forever, the default). A receive that
    /// times out fails with `WouldBlock`. The kernel counts this timeout in jiffies on its timer wheel, so it may
    /// end a few milliseconds (for long timeouts, up to about an eighth) late; [`Socket::wait_readable`] is
    /// precise.
    #[doc(alias = "SO_RCVTIMEO")]
    pub fn set_recv_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        // A zero timeout would mean "forever" to the kernel; the smallest real one is a microsecond.
        let timeout = timeout.map(|t| t.max(Duration::from_micros(1)));
        Ok(rustix::net::sockopt::set_socket_timeout(&self.fd, rustix::net::sockopt::Timeout::Recv, timeout)?)
    }

    /// Suppresses `ENOBUFS` reports of overruns (`NETLINK_NO_ENOBUFS`). Off by default: loss should be seen.
    pub fn set_no_enobufs(&self, on: bool) -> io::Result<()> {
        options::set_u32(self.fd.as_fd(), libc::NETLINK_NO_ENOBUFS, on as u32)
    }

    /// How many datagrams the kernel dropped at this socket since it was opened (`SO_MEMINFO`,
    /// `SK_MEMINFO_DROPS`): every multicast that did not fit the receive buffer counts, also those that arrived
    /// while the socket was congested and raised no second `ENOBUFS`. The kernel keeps it as a `u32`, which wraps.
    ///
    /// `Ok(None)` when the kernel's `SO_MEMINFO` predates the drop counter (Linux 4.x before it was added).
    #[doc(alias = "SO_MEMINFO")]
    #[doc(alias = "SK_MEMINFO_DROPS")]
    pub fn drops(&self) -> io::Result<Option<u32>> {
        options::meminfo_drops(self.fd.as_fd())
    }

    /// Sends one datagram to `to`.
    pub fn send_to(&self, buf: &[u8], to: NlAddr) -> io::Result<usize> {
        let addr = SocketAddrNetlink::new(to.port, to.groups);
        Ok(rustix::net::sendto(&self.fd, buf, rustix::net::SendFlags::empty(), &addr)?)
    }

    /// Sends one datagram to the kernel (port 0, no groups).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send_to(buf, NlAddr::KERNEL)
    }

    /// Receives one datagram into `buf`. An overrun since the last receive comes back as `ENOBUFS`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        batch::recv_one(self.fd.as_fd(), buf, 0)
    }

    /// Receives as many datagrams as are queued, up to the batch's capacity, in one `recvmmsg`.
    ///
    /// With `wait`, blocks until at least one arrives (unless the socket is non-blocking); without, returns
    /// `WouldBlock` when none is queued. Returns the number received; an overrun comes back as `ENOBUFS`.
    pub fn recv_batch(&self, batch: &mut RecvBatch, wait: bool) -> io::Result<usize> {
        batch.fill(self.fd.as_fd(), wait)
    }

    /// Waits until a datagram (or an error) is ready, or `timeout` passes; `None` waits forever.
    /// Returns whether the socket is readable.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_any([self], timeout)
    }
}

/// Waits until one of `sockets` has a datagram (or an error) ready, or `timeout` passes; `None` waits forever.
/// Returns whether any is readable. A signal does not restart the wait from the beginning: it goes on for what is
/// left of `timeout`.
pub fn wait_any<const N: usize>(sockets: [&Socket; N], timeout: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags};
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut fds = sockets.map(|s| PollFd::new(&s.fd, PollFlags::IN));
    loop {
        let left = match (timeout, deadline) {
            (None, _) => None,
            (Some(_), Some(d)) => Some(d.saturating_duration_since(Instant::now())),
            // So far off that it cannot be represented: as good as forever, but finite for poll.
            (Some(t), None) => Some(t),
        };
        let ts = left.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: t.subsec_nanos() as _,
        });
        match poll(&mut fds, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.fd
    }
}

#[cfg(test)]
mod tests;
