//! The run loop's epoll set (the bus's socket, the wake-up eventfd, one pidfd per watched client), and the checks
//! that decide which clients can be watched.
//!
//! A new client's pidfd is opened at once, before the bus answers it, but it is watched only once `/proc` shows
//! that process holding the client's socket (the pid in netlink credentials is the sender's own namespace's
//! number, which here may name another process). That check, and the check that the sockets of the clients that
//! cannot be watched are still bound, read `/proc`, so they run in a pass of their own: at most every 100 ms while
//! new clients wait, every second otherwise, and never more than a tenth of the time.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll;

use super::procfs;

/// The first check of new clients, after they arrived (so that one pass takes many).
const NEW_CLIENTS_AFTER: Duration = Duration::from_millis(100);
/// How often the sockets of unwatched clients are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// New clients checked in one pass (the others wait for the next).
const NEW_CLIENTS_PER_PASS: usize = 64;

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

/// What a pass found.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Clients whose socket is gone (closed, or another socket bound to the port since).
    pub(crate) gone: Vec<u32>,
    /// New clients that cannot be watched.
    pub(crate) unwatched: usize,
    /// New clients now watched.
    pub(crate) watched: usize,
}

/// The epoll set and the clients, by port: watched, waiting for their first check, or checked by socket.
pub(crate) struct Poller {
    ep: OwnedFd,
    watched: HashMap<u32, Watch>,
    /// New clients, with the pidfd of the process their credentials name (if it could be opened).
    new: HashMap<u32, Option<OwnedFd>>,
    /// Clients that cannot be watched, with their socket's inode.
    checked: HashMap<u32, u64>,
    next_pass: Instant,
    events: Vec<epoll::Event>,
}

impl Poller {
    pub(crate) fn new(socket: impl AsFd, wake: impl AsFd) -> io::Result<Poller> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ep, socket, epoll::EventData::new_u64(SOCKET_TOKEN), epoll::EventFlags::IN)?;
        epoll::add(&ep, wake, epoll::EventData::new_u64(WAKE_TOKEN), epoll::EventFlags::IN)?;
        Ok(Poller {
            ep,
            watched: HashMap::new(),
            new: HashMap::new(),
            checked: HashMap::new(),
            next_pass: Instant::now(),
            events: Vec::with_capacity(64),
        })
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

    /// A new client at `port`, whose credentials say pid `pid`: opens a pidfd for it now (pinning that process),
    /// to be watched after the next pass has checked that it holds the client's socket.
    pub(crate) fn watch(&mut self, port: u32, pid: i32) {
        self.unwatch(port);
        let pidfd = rustix::process::Pid::from_raw(pid)
            .and_then(|pid| rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok());
        if self.new.is_empty() && self.checked.is_empty() {
            self.next_pass = Instant::now() + NEW_CLIENTS_AFTER;
        } else {
            self.next_pass = self.next_pass.min(Instant::now() + NEW_CLIENTS_AFTER);
        }
        self.new.insert(port, pidfd);
    }

    /// Forgets the client at `port`.
    pub(crate) fn unwatch(&mut self, port: u32) {
        if let Some(w) = self.watched.remove(&port) {
            let _ = epoll::delete(&self.ep, &w.pidfd);
        }
        self.new.remove(&port);
        self.checked.remove(&port);
    }

    /// The watched process of the client at `port` exited: stops watching it, and says whether its socket is gone
    /// too. It is not when another process still holds it (the client forked, or passed the socket on): the
    /// client stays, and its socket is checked from now on.
    pub(crate) fn exited(&mut self, port: u32) -> bool {
        let Some(w) = self.watched.remove(&port) else { return true };
        let _ = epoll::delete(&self.ep, &w.pidfd);
        if procfs::socket_inode(port) == Some(w.inode) {
            self.checked.insert(port, w.inode);
            return false;
        }
        true
    }

    /// When the next pass is due, if there is anything to check.
    pub(crate) fn pass_at(&self) -> Option<Instant> {
        (!self.new.is_empty() || !self.checked.is_empty()).then_some(self.next_pass)
    }

    /// When due: checks new clients (watched if the process their credentials name holds their socket, else
    /// checked by socket from now on) and the sockets of the checked ones.
    pub(crate) fn pass(&mut self, now: Instant) -> Pass {
        let mut pass = Pass::default();
        if self.pass_at().is_none_or(|at| now < at) {
            return pass;
        }
        let bound = procfs::usersock_inodes();
        let new: Vec<u32> = self.new.keys().take(NEW_CLIENTS_PER_PASS).copied().collect();
        for port in new {
            let pidfd = self.new.remove(&port).flatten();
            match bound.as_ref().map(|b| b.get(&port).copied()) {
                // Its socket is already closed.
                Some(None) => pass.gone.push(port),
                Some(Some(inode)) => {
                    if self.start_watch(port, pidfd, inode) {
                        pass.watched += 1;
                    } else {
                        self.checked.insert(port, inode);
                        pass.unwatched += 1;
                    }
                }
                // `/proc/net/netlink` cannot be read: left to ECONNREFUSED.
                None => pass.unwatched += 1,
            }
        }
        if let Some(bound) = &bound {
            let gone = self.checked.iter().filter(|(port, inode)| bound.get(port) != Some(inode)).map(|(p, _)| *p);
            pass.gone.extend(gone.collect::<Vec<_>>());
            for port in &pass.gone {
                self.checked.remove(port);
            }
        }
        // Never more than a tenth of the time, however large `/proc/net/netlink` is.
        let spent = now.elapsed();
        let every = if self.new.is_empty() { CHECK_EVERY } else { NEW_CLIENTS_AFTER };
        self.next_pass = Instant::now() + every.max(spent * 9);
        pass
    }

    /// Watches `pidfd` for the client at `port` if its process holds socket `inode`.
    fn start_watch(&mut self, port: u32, pidfd: Option<OwnedFd>, inode: u64) -> bool {
        let Some(pidfd) = pidfd.filter(|fd| procfs::holds_socket(fd.as_fd(), inode)) else { return false };
        let token = epoll::EventData::new_u64(port as u64);
        if epoll::add(&self.ep, &pidfd, token, epoll::EventFlags::IN).is_err() {
            return false;
        }
        self.watched.insert(port, Watch { pidfd, inode });
        true
    }
}
