//! The run loop's epoll set: the bus's socket, the wake-up eventfd, and one pidfd per watched client.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::epoll;

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

/// The epoll set and the pidfds in it, by client port.
pub(crate) struct Poller {
    ep: OwnedFd,
    watched: HashMap<u32, OwnedFd>,
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

    /// Watches process `pid` for the client at `port`. False when it cannot be watched: pid 0 (the client's
    /// process is not in our pid namespace), or `pidfd_open` failed (`ESRCH`: not visible or already gone;
    /// `EMFILE`, ...). Such a client is left to the `ECONNREFUSED` of a later send to its port.
    pub(crate) fn watch(&mut self, port: u32, pid: i32) -> bool {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else { return false };
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else { return false };
        if epoll::add(&self.ep, &fd, epoll::EventData::new_u64(port as u64), epoll::EventFlags::IN).is_err() {
            return false;
        }
        if let Some(old) = self.watched.insert(port, fd) {
            let _ = epoll::delete(&self.ep, &old);
        }
        true
    }

    /// Stops watching the client at `port`.
    pub(crate) fn unwatch(&mut self, port: u32) {
        if let Some(fd) = self.watched.remove(&port) {
            let _ = epoll::delete(&self.ep, &fd);
        }
    }
}
