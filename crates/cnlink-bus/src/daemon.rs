//! [`Bus`]: the core on a `NETLINK_USERSOCK` socket bound to a well-known port, with callbacks in this process
//! running on worker threads. This is the daemon (`cnlink bus`) and the in-process API at once.
//!
//! The driver is thin: receive a batch, hand each datagram to [`Core::handle`], send what
//! [`Core::poll_transmit`] gives, act on [`Core::poll_event`]. Clients that hold state are watched through a
//! pidfd opened from their credentials, so a dead client's ids are unregistered (with notifications) at once; a
//! send refused with `ECONNREFUSED` (a closed socket) does the same.
//!
//! Each local callback added with [`Bus::add_callback`] has its own thread and bounded queue (the original
//! connector used a workqueue): a slow callback never delays the others, and what its full queue drops is counted
//! in [`Stats::dropped_local`]. A callback that never blocks (an echo, a counter) may instead run on the receive
//! thread itself ([`Bus::add_callback_inline`]), which saves a thread hand-off per message; every other id waits
//! while it runs.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use cnlink::socket::{NlAddr, Protocol, RecvBatch, Socket};
use cnlink::wire::{CbId, CnMsgHdr};
use rustix::event::epoll;

use crate::core::{Config, Core, Delivery, Entry, Event, RegisterError, SendError, Sender, Stats};

/// How the bus is set up.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// The port id to bind ([`crate::DEFAULT_PORT`] by default).
    pub port: u32,
    /// The core's policy and limits.
    pub config: Config,
    /// Messages each local callback may have waiting (default 1024).
    pub queue_len: usize,
    /// Receive buffer to ask for, in bytes (default 4 MiB; capped by `rmem_max` when unprivileged).
    pub recv_buffer: usize,
    /// Log registrations and departures to stderr, not only denials.
    pub verbose: bool,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            port: crate::DEFAULT_PORT,
            config: Config::default(),
            queue_len: 1024,
            recv_buffer: 4 << 20,
            verbose: false,
        }
    }
}

/// A local callback: runs with each message for its id, on its own worker thread ([`Bus::add_callback`]) or on
/// the bus's receive thread ([`Bus::add_callback_inline`]).
pub type Callback = Box<dyn FnMut(&Context, &Delivery) + Send>;

/// What a callback can do: reply and send through the bus.
#[derive(Debug, Clone)]
pub struct Context {
    shared: Weak<Shared>,
}

impl Context {
    /// Replies to `to` with the documents' rule: same id and `seq`, `ack + 1`, unicast to the sender.
    pub fn reply(&self, to: &Delivery, data: &[u8]) -> Result<(), SendError> {
        self.send(to.hdr.reply(), data, to.from.port, 0).map(|_| ())
    }

    /// `cn_netlink_send_mult` through the bus (see [`Core::send`]).
    pub fn send(&self, hdr: CnMsgHdr, data: &[u8], portid: u32, group: u32) -> Result<usize, SendError> {
        let shared = self.shared.upgrade().ok_or(SendError::NoListeners)?;
        if portid != 0 && group == 0 {
            return shared.unicast(hdr, data, portid).map(|()| 1);
        }
        let mut core = shared.lock();
        let n = core.send(hdr, data, portid, group)?;
        shared.flush_transmits(&mut core);
        Ok(n)
    }
}

/// Where a local callback runs.
enum Handler {
    /// On its own thread, fed through a bounded queue.
    Worker(SyncSender<Delivery>),
    /// On the receive thread, after the core's lock is released. A callback that panicked leaves the mutex
    /// poisoned: it is not called again, and its messages are counted as dropped.
    Inline(Arc<Mutex<Callback>>),
}

/// Deliveries for inline callbacks, taken under the core's lock and run after it is released.
type InlineQueue = Vec<(Arc<Mutex<Callback>>, Delivery)>;

struct Shared {
    sock: Socket,
    port: u32,
    core: Mutex<Core>,
    workers: Mutex<HashMap<CbId, Handler>>,
    stop: AtomicBool,
    wake: OwnedFd,
    queue_len: usize,
    verbose: bool,
    denials_logged: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends everything the core queued; failed sends go back to the core (which may queue notifications).
    fn flush_transmits(&self, core: &mut Core) {
        while let Some(t) = core.poll_transmit() {
            for port in t.ports {
                if let Err(e) = self.sock.send_to(&t.datagram, NlAddr::port(port)) {
                    core.send_failed(port, e.raw_os_error().unwrap_or(0));
                }
            }
        }
    }

    /// A unicast ([`Core::send`] with a port and group 0), sent without taking the core's lock: the core keeps
    /// no state for it, and the lock is held by the run loop while it hands messages to the callbacks, so a
    /// callback's reply would otherwise wait for it. The core hears of a failed send, as in `flush_transmits`.
    fn unicast(&self, hdr: CnMsgHdr, data: &[u8], port: u32) -> Result<(), SendError> {
        let d = cnlink::wire::datagram(hdr, data, 0).map_err(|_| SendError::TooLong)?;
        if let Err(e) = self.sock.send_to(&d, NlAddr::port(port)) {
            let mut core = self.lock();
            core.send_failed(port, e.raw_os_error().unwrap_or(0));
            self.flush_transmits(&mut core);
        }
        Ok(())
    }

    fn log_denial(&self, d: &crate::core::Denial) {
        let n = self.denials_logged.fetch_add(1, Ordering::Relaxed);
        if n < 100 || n.is_multiple_of(1000) {
            let who = d.from.creds.map_or("?".to_string(), |c| format!("uid {} pid {}", c.uid, c.pid));
            let id = d.id.map_or(String::new(), |id| format!(" id {id}"));
            eprintln!(
                "cnlink bus: denied op {:#x}{id} from port {} ({who}): {} [{} denials so far]",
                d.op,
                d.from.port,
                io::Error::from_raw_os_error(d.errno as i32),
                n + 1
            );
        }
    }
}

/// The bus: a core on a socket, and the in-process connector API. Cheap to clone; the socket closes when the
/// last clone (and the run loop) is gone.
#[derive(Debug, Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

const SOCKET_TOKEN: u64 = u64::MAX;
const WAKE_TOKEN: u64 = u64::MAX - 1;

impl Bus {
    /// Binds the bus's socket (with `SO_PASSCRED`, non-blocking) at `opts.port`.
    pub fn bind(opts: BusOptions) -> io::Result<Bus> {
        let sock = Socket::open_at(Protocol::Usersock, opts.port)?;
        sock.set_passcred(true)?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer(opts.recv_buffer);
        let port = sock.port_id()?;
        let wake =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
        Ok(Bus {
            shared: Arc::new(Shared {
                sock,
                port,
                core: Mutex::new(Core::new(opts.config)),
                workers: Mutex::new(HashMap::new()),
                stop: AtomicBool::new(false),
                wake,
                queue_len: opts.queue_len.max(1),
                verbose: opts.verbose,
                denials_logged: AtomicU64::new(0),
            }),
        })
    }

    /// The port id the bus listens on.
    pub fn port(&self) -> u32 {
        self.shared.port
    }

    /// Registers a callback in this process (`cn_add_callback`); it runs on its own worker thread, fed through a
    /// queue of [`BusOptions::queue_len`] messages (what a full queue refuses is counted in
    /// [`Stats::dropped_local`]). A slow or blocking callback delays only its own id.
    pub fn add_callback<F>(&self, id: CbId, name: &str, callback: F) -> Result<(), RegisterError>
    where
        F: FnMut(&Context, &Delivery) + Send + 'static,
    {
        let mut cb: Callback = Box::new(callback);
        let (tx, rx) = sync_channel::<Delivery>(self.shared.queue_len);
        let mut core = self.shared.lock();
        core.add_callback(id, name)?;
        let ctx = Context { shared: Arc::downgrade(&self.shared) };
        std::thread::Builder::new()
            .name(format!("cn-{}", id))
            .spawn(move || {
                while let Ok(d) = rx.recv() {
                    cb(&ctx, &d);
                }
            })
            .map_err(|_| RegisterError::Limit)?;
        self.shared.workers.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Handler::Worker(tx));
        self.shared.flush_transmits(&mut core);
        Ok(())
    }

    /// Registers a callback that **runs on the daemon's receive thread: it must not block; every other id waits
    /// while it runs.**
    ///
    /// For fast callbacks that never wait (an echo, a counter): a message reaches it without the hand-off to a
    /// worker thread, which saves a thread wake-up per message. It runs after the core has handled the batch of
    /// datagrams it came in, without the core's lock held, so it may reply, send and (un)register like a worker
    /// callback; [`Context::reply`] never blocks (the bus's socket is non-blocking: a full receiver counts as a
    /// failed send). Messages for it are never queued, so none is dropped for a full queue. A panic is caught: the
    /// callback is not called again, and later messages for its id are counted in [`Stats::dropped_local`].
    /// Anything that may block (a file, a lock held elsewhere, a request to another agent) belongs in
    /// [`Bus::add_callback`].
    pub fn add_callback_inline<F>(&self, id: CbId, name: &str, callback: F) -> Result<(), RegisterError>
    where
        F: FnMut(&Context, &Delivery) + Send + 'static,
    {
        let cb: Callback = Box::new(callback);
        let mut core = self.shared.lock();
        core.add_callback(id, name)?;
        self.shared
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Handler::Inline(Arc::new(Mutex::new(cb))));
        self.shared.flush_transmits(&mut core);
        Ok(())
    }

    /// Unregisters a local callback (`cn_del_callback`). Messages already queued to a worker callback still run;
    /// an inline callback may still run with the messages of the batch being handled.
    pub fn del_callback(&self, id: CbId) -> bool {
        let mut core = self.shared.lock();
        let done = core.del_callback(id);
        self.shared.workers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.shared.flush_transmits(&mut core);
        done
    }

    /// `cn_netlink_send_mult` (see [`Core::send`]).
    pub fn send(&self, hdr: CnMsgHdr, data: &[u8], portid: u32, group: u32) -> Result<usize, SendError> {
        Context { shared: Arc::downgrade(&self.shared) }.send(hdr, data, portid, group)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// The registered ids, in registration order.
    pub fn entries(&self) -> Vec<Entry> {
        self.shared.lock().entries()
    }

    /// Runs a closure on the core (for inspection in tests and tools).
    pub fn with_core<R>(&self, f: impl FnOnce(&Core) -> R) -> R {
        f(&self.shared.lock())
    }

    /// Runs the bus until [`BusHandle::stop`] (or an IO error on its socket).
    pub fn run(&self) -> io::Result<()> {
        let sh = &*self.shared;
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(&ep, sh.sock.as_fd(), epoll::EventData::new_u64(SOCKET_TOKEN), epoll::EventFlags::IN)?;
        epoll::add(&ep, &sh.wake, epoll::EventData::new_u64(WAKE_TOKEN), epoll::EventFlags::IN)?;
        let mut watched: HashMap<u32, OwnedFd> = HashMap::new();
        let mut batch = RecvBatch::new(32, 1 << 16);
        let mut ready = Vec::with_capacity(64);
        let mut pending = Vec::new();
        let mut inline = Vec::new();
        while !sh.stop.load(Ordering::Acquire) {
            let timeout = sh.lock().poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
            let ts = timeout.map(|t| rustix::time::Timespec {
                tv_sec: t.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: t.subsec_nanos() as _,
            });
            ready.clear();
            match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut ready), ts.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut gone = Vec::new();
            for ev in ready.iter() {
                match ev.data.u64() {
                    SOCKET_TOKEN => self.drain(&mut batch, &mut pending, &mut inline)?,
                    WAKE_TOKEN => {}
                    port => gone.push(port as u32),
                }
            }
            let mut core = sh.lock();
            for port in gone {
                core.client_gone(port);
            }
            core.handle_timeout(Instant::now());
            self.flush(&mut core, &ep, &mut watched, &mut pending, &mut inline);
            drop(core);
            self.run_inline(&mut inline);
        }
        Ok(())
    }

    /// Runs the inline callbacks' deliveries, in order, without the core's lock.
    fn run_inline(&self, inline: &mut InlineQueue) {
        if inline.is_empty() {
            return;
        }
        let ctx = Context { shared: Arc::downgrade(&self.shared) };
        for (cb, d) in inline.drain(..) {
            let ran = catch_unwind(AssertUnwindSafe(|| match cb.lock() {
                Ok(mut f) => {
                    f(&ctx, &d);
                    true
                }
                Err(_) => false,
            }));
            match ran {
                Ok(true) => {}
                Ok(false) => self.shared.lock().note_local_drop(),
                Err(_) => {
                    eprintln!("cnlink bus: the inline callback for {} panicked; it is not called again", d.hdr.id)
                }
            }
        }
    }

    /// Receives everything queued on the socket and feeds it to the core.
    fn drain(&self, batch: &mut RecvBatch, pending: &mut Vec<Event>, inline: &mut InlineQueue) -> io::Result<()> {
        let sh = &*self.shared;
        loop {
            match sh.sock.recv_batch(batch, false) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let now = Instant::now();
                    let mut core = sh.lock();
                    for (meta, d) in batch.iter() {
                        let d = if meta.truncated { &[][..] } else { d };
                        core.handle(now, Sender { port: meta.from.port, creds: meta.creds }, d);
                    }
                    self.dispatch(&mut core, pending, inline);
                    drop(core);
                    self.run_inline(inline);
                    // A short batch emptied the queue; epoll is level-triggered, so whatever arrives now wakes
                    // the run loop again, and the receive that would only say EAGAIN is saved.
                    if n < batch.capacity() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // An overrun of the bus's own socket: datagrams were lost; keep serving.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends the core's transmits and hands deliveries to the workers (everything but watching, which needs
    /// the run loop's epoll and goes to `pending`, and inline callbacks' deliveries, which go to `inline` to run
    /// once the core's lock is released).
    fn dispatch(&self, core: &mut Core, pending: &mut Vec<Event>, inline: &mut InlineQueue) {
        let sh = &*self.shared;
        sh.flush_transmits(core);
        while let Some(ev) = core.poll_event() {
            match ev {
                Event::Deliver(d) => {
                    let workers = sh.workers.lock().unwrap_or_else(|p| p.into_inner());
                    match workers.get(&d.hdr.id) {
                        Some(Handler::Worker(tx)) => match tx.try_send(d) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => core.note_local_drop(),
                        },
                        Some(Handler::Inline(cb)) => inline.push((cb.clone(), d)),
                        None => core.note_local_drop(),
                    }
                }
                Event::Denied(d) => sh.log_denial(&d),
                Event::Registered { id, owner } if sh.verbose => eprintln!("cnlink bus: registered {id} ({owner:?})"),
                Event::Unregistered { id, owner } if sh.verbose => {
                    eprintln!("cnlink bus: unregistered {id} ({owner:?})")
                }
                other @ (Event::Watch { .. } | Event::Unwatch { .. }) => pending.push(other),
                _ => {}
            }
        }
    }

    /// Dispatches, then opens and closes process watches; a client already dead when watched is cleaned up.
    fn flush(
        &self,
        core: &mut Core,
        ep: &OwnedFd,
        watched: &mut HashMap<u32, OwnedFd>,
        pending: &mut Vec<Event>,
        inline: &mut InlineQueue,
    ) {
        loop {
            self.dispatch(core, pending, inline);
            let mut dead = Vec::new();
            for ev in pending.drain(..) {
                match ev {
                    Event::Watch { port, pid } => match watch(ep, port, pid) {
                        Ok(fd) => {
                            watched.insert(port, fd);
                        }
                        Err(_) => dead.push(port),
                    },
                    Event::Unwatch { port } => {
                        if let Some(fd) = watched.remove(&port) {
                            let _ = epoll::delete(ep, &fd);
                        }
                    }
                    _ => {}
                }
            }
            if dead.is_empty() {
                return;
            }
            for port in dead {
                core.client_gone(port);
            }
        }
    }

    /// Runs the bus on a new thread.
    pub fn spawn(&self) -> io::Result<BusHandle> {
        let bus = self.clone();
        let thread = std::thread::Builder::new().name("cnlink-bus".into()).spawn(move || bus.run())?;
        Ok(BusHandle { bus: self.clone(), thread: Some(thread) })
    }

    fn request_stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes());
    }
}

/// Opens a pidfd for `pid` and adds it to the epoll set under `port`.
fn watch(ep: &OwnedFd, port: u32, pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    epoll::add(ep, &fd, epoll::EventData::new_u64(port as u64), epoll::EventFlags::IN)?;
    Ok(fd)
}

/// A bus running on its own thread; stops it when dropped.
#[derive(Debug)]
pub struct BusHandle {
    bus: Bus,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl BusHandle {
    /// The running bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Whether the run loop has ended (after a stop, or on an IO error that [`BusHandle::stop`] returns).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the run loop and waits for it; returns its result.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.bus.request_stop();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(io::Error::other("bus thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for BusHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
