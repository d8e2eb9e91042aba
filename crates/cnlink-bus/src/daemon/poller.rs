//! The run loop's epoll set: the bus's socket, the wake-up eventfd, and one pidfd per watched client.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;

use super::procfs;

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
    events: Vec<epoll::Event>,
}

impl Poller {
    pub(crate) fn new(socket: impl AsFd, wake: impl AsFd) -> io::Result<Poller> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ep, socket, epoll::EventData::new_u64(SOCKET_TOKEN), epoll::EventFlags::IN)?;
        epoll::add(&ep, wake, epoll::EventData::new_u64(WAKE_TOKEN), epoll::EventFlags::IN)?;
        Ok(Poller { ep, watched: HashMap::new(), events: Vec::with_capacity(64) })
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
    /// does not hold the socket (it was passed on); `pidfd_open` or `/proc` failing. Such a client is left to the
    /// `ECONNREFUSED` of a later send to its port.
    pub(crate) fn watch(&mut self, port: u32, pid: i32) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
        let Some(inode) = procfs::socket_inode(port) else { return false };
        let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else { return false };
        if !procfs::holds_socket(pidfd.as_fd(), inode) {
            return false;
        }
        if epoll::add(&self.ep, &pidfd, epoll::EventData::new_u64(port as u64), epoll::EventFlags::IN).is_err() {
            return false;
        }
        self.unwatch(port);
        self.watched.insert(port, Watch { pidfd, inode });
        true
    }

    /// The watched process of the client at `port` exited: stops watching it, and says whether its socket is gone
    /// too. It is not when another process still holds it (the client forked, or passed the socket on): the
    /// client stays, left to the `ECONNREFUSED` of a later send.
    pub(crate) fn exited(&mut self, port: u32) -> bool {
        let Some(w) = self.watched.remove(&port) else { return true };
        let _ = epoll::delete(&self.ep, &w.pidfd);
        procfs::socket_inode(port) != Some(w.inode)
    }

    /// Stops watching the client at `port`.
    pub(crate) fn unwatch(&mut self, port: u32) {
        if let Some(w) = self.watched.remove(&port) {
            let _ = epoll::delete(&self.ep, &w.pidfd);
        }
    }
}
