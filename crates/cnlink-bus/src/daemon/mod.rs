//! [`Bus`]: the core on a `NETLINK_USERSOCK` socket bound to a well-known port, with callbacks in this process
//! running on worker threads. This is the daemon (`cnlink bus`) and the in-process API at once.
//!
//! The driver is thin: receive a batch, hand each datagram to [`Core::handle`], act on [`Core::poll_action`]
//! (opening a pidfd for each new client before anything is sent, so that the process is pinned before the client
//! hears back), then send what [`Core::poll_transmit`] gives. A client's pidfd is watched once `/proc` shows that
//! process holding the client's socket, so a dead client's ids are unregistered (with notifications) at once; the
//! socket of a client that cannot be watched that way (another pid namespace, a socket passed on) is checked in
//! `/proc/net/netlink` every second; and a send refused with `ECONNREFUSED` (a closed socket) ends any client.
//!
//! Each local callback added with [`Bus::add_callback`] has its own thread and bounded queue (the original
//! connector used a workqueue): a slow callback never delays the others, and what its full queue drops is counted
//! in [`BusCounters::dropped_local`]. A callback that never blocks (an echo, a counter) may instead run on the receive
//! thread itself ([`Bus::add_callback_inline`]), which saves a thread hand-off per message; every other id waits
//! while it runs. Log lines go through a bounded queue to a thread of their own (see [`BusOptions::log_queue`]).

mod log;
mod poller;
mod procfs;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnlink::socket::{NlAddr, Protocol, RecvBatch, Socket};
use cnlink::wire::{CbId, CnMsgHdr};

use crate::core::{Action, BusCounters, Config, Core, Delivery, Entry, RegisterError, SendError, Sender};
use log::{Line, Log};
use poller::{Poller, Ready};

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
    /// Log lines that may wait for stderr (default 1024); beyond them lines are dropped and counted in
    /// [`BusCounters::log_dropped`], so that a blocked stderr never stops the bus.
    pub log_queue: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            port: crate::DEFAULT_PORT,
            config: Config::default(),
            queue_len: 1024,
            recv_buffer: 4 << 20,
            verbose: false,
            log_queue: 1024,
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
    /// Replies to `to` with the documents' rule: same id and `seq`, `ack + 1`, unicast to the sender. Never
    /// blocks: a receiver whose queue is full gives [`SendError::Full`] (the reply is lost, and counted in
    /// [`BusCounters::dropped_full`]), a closed one [`SendError::Closed`].
    pub fn reply(&self, to: &Delivery, data: &[u8]) -> Result<(), SendError> {
        self.send(to.hdr.reply(), data, to.from.port, 0).map(|_| ())
    }

    /// `cn_netlink_send_mult` through the bus (see [`Core::send`]). A unicast (`portid` set, `group` 0) returns
    /// the send's error; a group send counts what full receivers refuse in [`BusCounters::dropped_full`], as the
    /// kernel's broadcast does not report them either.
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

    /// A callback panicked on a message: log it and count it.
    fn panicked(&self, id: CbId, inline: bool) {
        if let Some(shared) = self.shared.upgrade() {
            let logged = shared.log.line(Line::Panicked { id, inline });
            let mut core = shared.lock();
            core.note_callback_panic();
            if !logged {
                core.note_log_dropped(1);
            }
        }
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

/// The longest the run loop waits without turning (see [`Bus::heartbeat`]).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

struct Shared {
    sock: Socket,
    port: u32,
    core: Mutex<Core>,
    workers: Mutex<HashMap<CbId, Handler>>,
    stop: AtomicBool,
    /// Turns of the run loop, for [`Bus::heartbeat`].
    beats: AtomicU64,
    wake: OwnedFd,
    queue_len: usize,
    verbose: bool,
    log: Log,
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
    /// Returns how many datagrams it took.
    fn flush_transmits(&self, core: &mut Core) -> usize {
        let mut n = 0;
        while let Some(t) = core.poll_transmit() {
            n += 1;
            for port in t.ports {
                if let Err(e) = self.sock.send_to(&t.datagram, NlAddr::port(port)) {
                    core.send_failed(port, e.raw_os_error().unwrap_or(0));
                }
            }
        }
        n
    }

    /// A unicast ([`Core::send`] with a port and group 0), sent without taking the core's lock: the core keeps
    /// no state for it, and the lock is held by the run loop while it hands messages to the callbacks, so a
    /// callback's reply would otherwise wait for it. The core hears of a failed send, as in `flush_transmits`.
    fn unicast(&self, hdr: CnMsgHdr, data: &[u8], port: u32) -> Result<(), SendError> {
        let d = cnlink::wire::datagram(hdr, data, 0).map_err(|_| SendError::TooLong)?;
        self.sock.send_to(&d, NlAddr::port(port)).map(drop).map_err(|e| {
            let errno = e.raw_os_error().unwrap_or(0);
            let mut core = self.lock();
            core.send_failed(port, errno);
            self.flush_transmits(&mut core);
            SendError::from_errno(errno)
        })
    }

    /// Queues a log line; a line the full queue refuses is counted.
    fn log(&self, core: &mut Core, line: Line) {
        if !self.log.line(line) {
            core.note_log_dropped(1);
        }
    }
}

/// The bus: a core on a socket, and the in-process connector API. Cheap to clone; the socket closes when the
/// last clone (and the run loop) is gone.
#[derive(Debug, Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

impl Bus {
    /// Binds the bus's socket (with `SO_PASSCRED`, non-blocking) at `opts.port`, and starts the log's thread.
    pub fn bind(opts: BusOptions) -> io::Result<Bus> {
        let sock = Socket::open_at(Protocol::Usersock, opts.port)?;
        sock.set_passcred(true)?;
        sock.set_nonblocking(true)?;
        let _ = sock.set_recv_buffer(opts.recv_buffer);
        let port = sock.port();
        let wake =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK)?;
        Ok(Bus {
            shared: Arc::new(Shared {
                sock,
                port,
                core: Mutex::new(Core::new(opts.config)),
                workers: Mutex::new(HashMap::new()),
                stop: AtomicBool::new(false),
                beats: AtomicU64::new(0),
                wake,
                queue_len: opts.queue_len.max(1),
                verbose: opts.verbose,
                log: Log::start(opts.log_queue)?,
            }),
        })
    }

    /// The port id the bus listens on.
    pub fn port(&self) -> u32 {
        self.shared.port
    }

    /// The bus's socket, to read its options (the receive buffer granted). Never receive from it: the run loop
    /// does.
    pub fn socket(&self) -> &Socket {
        &self.shared.sock
    }

    /// Registers a callback in this process (`cn_add_callback`); it runs on its own worker thread, fed through a
    /// queue of [`BusOptions::queue_len`] messages (what a full queue refuses is counted in
    /// [`BusCounters::dropped_local`]). A slow or blocking callback delays only its own id. A panic is caught, logged
    /// and counted in [`BusCounters::callback_panics`]; the callback goes on with the next message.
    pub fn add_callback<F>(&self, id: CbId, name: &str, callback: F) -> Result<(), RegisterError>
    where
        F: FnMut(&Context, &Delivery) + Send + 'static,
    {
        let mut cb: Callback = Box::new(callback);
        let (tx, rx) = sync_channel::<Delivery>(self.shared.queue_len);
        let mut core = self.shared.lock();
        core.add_callback(id, name)?;
        let ctx = Context { shared: Arc::downgrade(&self.shared) };
        let spawned = std::thread::Builder::new().name(format!("cn-{}", id)).spawn(move || {
            while let Ok(d) = rx.recv() {
                if catch_unwind(AssertUnwindSafe(|| cb(&ctx, &d))).is_err() {
                    ctx.panicked(d.hdr.id, false);
                }
            }
        });
        if spawned.is_err() {
            core.del_callback(id);
            self.shared.flush_transmits(&mut core);
            return Err(RegisterError::Limit);
        }
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
    /// callback; [`Context::reply`] never blocks (the bus's socket is non-blocking: a full receiver is an error).
    /// Messages for it are never queued, so none is dropped for a full queue. A panic is caught, logged and
    /// counted in [`BusCounters::callback_panics`]: the callback is not called again, and later messages for its id are
    /// counted in [`BusCounters::dropped_local`]. Anything that may block (a file, a lock held elsewhere, a request to
    /// another agent) belongs in [`Bus::add_callback`].
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

    /// `cn_netlink_send_mult` (see [`Context::send`]).
    pub fn send(&self, hdr: CnMsgHdr, data: &[u8], portid: u32, group: u32) -> Result<usize, SendError> {
        Context { shared: Arc::downgrade(&self.shared) }.send(hdr, data, portid, group)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> BusCounters {
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

    /// Turns of the run loop so far. The loop turns at least every [`HEARTBEAT`], traffic or not, so a value that
    /// stops growing for longer means the loop is stuck (a supervisor's watchdog can tell).
    pub fn heartbeat(&self) -> u64 {
        self.shared.beats.load(Ordering::Relaxed)
    }

    /// Runs the bus until [`BusHandle::stop`] (or an IO error on its socket).
    pub fn run(&self) -> io::Result<()> {
        let sh = &*self.shared;
        let mut poller = Poller::new(&sh.sock, &sh.wake)?;
        let mut batch = RecvBatch::new(32, 1 << 16);
        let mut inline = Vec::new();
        while !sh.stop.load(Ordering::Acquire) {
            sh.beats.fetch_add(1, Ordering::Relaxed);
            let due = [sh.lock().poll_timeout(), poller.pass_at()].into_iter().flatten().min();
            let timeout = due.map_or(HEARTBEAT, |t| t.saturating_duration_since(Instant::now()).min(HEARTBEAT));
            let mut exited = Vec::new();
            for ready in poller.wait(Some(timeout))? {
                match ready {
                    Ready::Socket => self.drain(&mut batch, &mut poller, &mut inline)?,
                    Ready::Wake => {}
                    Ready::Exited(port) => exited.push(port),
                }
            }
            let mut core = sh.lock();
            for port in exited {
                if poller.exited(port) {
                    core.client_gone(port);
                } else {
                    core.note_unwatched();
                }
            }
            let pass = poller.pass(Instant::now());
            for port in pass.gone {
                core.client_gone(port);
            }
            (0..pass.unwatched).for_each(|_| core.note_unwatched());
            (0..pass.watched).for_each(|_| core.note_watched());
            core.handle_timeout(Instant::now());
            self.dispatch(&mut core, &mut poller, &mut inline);
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
                Err(_) => ctx.panicked(d.hdr.id, true),
            }
        }
    }

    /// Receives everything queued on the socket and feeds it to the core.
    fn drain(&self, batch: &mut RecvBatch, poller: &mut Poller, inline: &mut InlineQueue) -> io::Result<()> {
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
                    self.dispatch(&mut core, poller, inline);
                    drop(core);
                    self.run_inline(inline);
                    // A short batch emptied the queue; epoll is level-triggered, so whatever arrives now wakes
                    // the run loop again, and the receive that would only say EAGAIN is saved.
                    if n < batch.capacity() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // An overrun of the bus's own socket: datagrams were lost before we read them; count it, serve on.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => sh.lock().note_overrun(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Acts on the core's actions, then sends its transmits, until neither is left: process watches open before
    /// the replies that follow the requests that made them; deliveries go to the workers, or to `inline` to run
    /// once the core's lock is released; log lines go to the log's queue.
    fn dispatch(&self, core: &mut Core, poller: &mut Poller, inline: &mut InlineQueue) {
        let sh = &*self.shared;
        loop {
            let mut acted = false;
            while let Some(action) = core.poll_action() {
                acted = true;
                match action {
                    Action::Deliver(d) => self.deliver(core, d, inline),
                    Action::Watch { port, pid } => poller.watch(port, pid),
                    Action::Unwatch { port } => poller.unwatch(port),
                    Action::Denied(d) => {
                        let logged = sh.log.denial(d);
                        if !logged {
                            core.note_log_dropped(1);
                        }
                    }
                    Action::Registered { id, owner } if sh.verbose => sh.log(core, Line::Registered(id, owner)),
                    Action::Unregistered { id, owner } if sh.verbose => sh.log(core, Line::Unregistered(id, owner)),
                    _ => {}
                }
            }
            if sh.flush_transmits(core) == 0 && !acted {
                return;
            }
        }
    }

    fn deliver(&self, core: &mut Core, d: Delivery, inline: &mut InlineQueue) {
        let workers = self.shared.workers.lock().unwrap_or_else(|p| p.into_inner());
        match workers.get(&d.hdr.id) {
            Some(Handler::Worker(tx)) => match tx.try_send(d) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => core.note_local_drop(),
            },
            Some(Handler::Inline(cb)) => inline.push((cb.clone(), d)),
            None => core.note_local_drop(),
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
