//! The run loop's epoll set: the bus's socket, the wake-up eventfd, and one pidfd per watched client; and the
//! clients whose process cannot be watched, whose sockets it checks in `/proc/net/netlink` every second.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::procfs;

/// How often the sockets of unwatched clients are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

const SOCKET_TOKEN: u64 = u64::MAX;
const WAKE_TOKEN: u64 = u64::MAX - 1;

/// What woke the run loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    /// The bus's socket has datagrams.
    Socket,
    /// Someone asked the loop to look at its stop flag.
    Wake,
    /// The process of the client at this port exited.
    Exited(u32),
}

/// A watched client: its process's pidfd, and the inode of its socket.
struct Watch {
    pidfd: OwnedFd,
    inode: u64,
}

/// The epoll set and the pidfds in it, by client port.
pub(crate) struct Poller {
    ep: OwnedFd,
    watched: HashMap<u32, Watch>,
    /// Clients that cannot be watched, by port, with their socket's inode.
    checked: HashMap<u32, u64>,
    next_check: Instant,
    events: Vec<epoll::Event>,
}

impl Poller {
    pub(crate) fn new(socket: impl AsFd, wake: impl AsFd) -> io::Result<Poller> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ep, socket, epoll::EventData::new_u64(SOCKET_TOKEN), epoll::EventFlags::IN)?;
        epoll::add(&ep, wake, epoll::EventData::new_u64(WAKE_TOKEN), epoll::EventFlags::IN)?;
        let (watched, checked) = (HashMap::new(), HashMap::new());
        Ok(Poller { ep, watched, checked, next_check: Instant::now(), events: Vec::with_capacity(64) })
    }

    /// Waits up to `timeout` (forever with `None`); returns what is ready (nothing after `EINTR` or a timeout).
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<Vec<Ready>> {
        let ts = timeout.map(|t| rustix::time::Timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: t.subsec_nanos() as _,
        });
        self.events.clear();
        match epoll::wait(&self.ep, rustix::buffer::spare_capacity(&mut self.events), ts.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
        Ok(self
            .events
            .iter()
            .map(|ev| match ev.data.u64() {
                SOCKET_TOKEN => Ready::Socket,
                WAKE_TOKEN => Ready::Wake,
                port => Ready::Exited(port as u32),
            })
            .collect())
    }

    /// Watches process `pid` for the client at `port`, once `/proc` shows that this process holds the socket
    /// bound to `port`. False when it cannot: pid 0; a pid from another pid namespace (credentials carry the
    /// sender's pid as its own namespace numbers it, which here names another process or none); a process that
    /// does not hold the socket (it was passed on); `pidfd_open` or `/proc` failing. Such a client's socket is
    /// checked every second instead (when `/proc/net/netlink` shows it), and a send to it that fails with
    /// `ECONNREFUSED` ends it too.
    pub(crate) fn watch(&mut self, port: u32, pid: i32) -> bool {
        self.unwatch(port);
        let Some(inode) = procfs::socket_inode(port) else { return false };
        let token = epoll::EventData::new_u64(port as u64);
        let pidfd =
            self.pidfd_holding(pid, inode).filter(|fd| epoll::add(&self.ep, fd, token, epoll::EventFlags::IN).is_ok());
        match pidfd {
            Some(pidfd) => {
                self.watched.insert(port, Watch { pidfd, inode });
                true
            }
            None => {
                self.check_later(port, inode);
                false
            }
        }
    }

    /// A pidfd for `pid`, if that process holds socket `inode`.
    fn pidfd_holding(&self, pid: i32, inode: u64) -> Option<OwnedFd> {
        let pid = rustix::process::Pid::from_raw(pid)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
        procfs::holds_socket(pidfd.as_fd(), inode).then_some(pidfd)
    }

    fn check_later(&mut self, port: u32, inode: u64) {
        if self.checked.is_empty() {
            self.next_check = Instant::now() + CHECK_EVERY;
        }
        self.checked.insert(port, inode);
    }

    /// The watched process of the client at `port` exited: stops watching it, and says whether its socket is gone
    /// too. It is not when another process still holds it (the client forked, or passed the socket on): the
    /// client stays, and its socket is checked from now on.
    pub(crate) fn exited(&mut self, port: u32) -> bool {
        let Some(w) = self.watched.remove(&port) else { return true };
        let _ = epoll::delete(&self.ep, &w.pidfd);
        if procfs::socket_inode(port) == Some(w.inode) {
            self.check_later(port, w.inode);
            return false;
        }
        true
    }

    /// When the sockets of unwatched clients are next due for a check.
    pub(crate) fn check_at(&self) -> Option<Instant> {
        (!self.checked.is_empty()).then_some(self.next_check)
    }

    /// Checks, when due, that the sockets of unwatched clients are still bound; returns the ports of those that are
    /// not (closed, or another socket bound to the port since), which are forgotten.
    pub(crate) fn check(&mut self, now: Instant) -> Vec<u32> {
        if self.checked.is_empty() || now < self.next_check {
            return Vec::new();
        }
        self.next_check = now + CHECK_EVERY;
        let Some(bound) = procfs::usersock_inodes() else { return Vec::new() };
        let gone: Vec<u32> =
            self.checked.iter().filter(|(port, inode)| bound.get(port) != Some(inode)).map(|(port, _)| *port).collect();
        for port in &gone {
            self.checked.remove(port);
        }
        gone
    }

    /// Stops watching the client at `port`.
    pub(crate) fn unwatch(&mut self, port: u32) {
        if let Some(w) = self.watched.remove(&port) {
            let _ = epoll::delete(&self.ep, &w.pidfd);
        }
        self.checked.remove(&port);
    }
}
