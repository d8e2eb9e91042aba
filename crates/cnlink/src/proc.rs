//! Process events from the proc connector, on a blocking socket.
//!
//! [`ProcEvents::subscribe`] joins the proc connector's group, sends the subscription and waits for the kernel's
//! ack; the stream then yields [`ProcItem`]s: events, acks, `Overrun` markers for receive-buffer overruns, and
//! `Lost` records that say how many messages were lost and whether that count is exact ([`Loss`]). Dropping it
//! unsubscribes.
//!
//! With an event filter that is a strict subset, the Linux 6.6 kernel-side filter is used when the kernel has it
//! (a filtered socket never sees its own ack, so a short-lived second socket watches for it); on older kernels
//! the same filter runs in userspace. Unfiltered, losses are counted from the kernel's per-CPU sequence numbers;
//! kernel-filtered, from the socket's drop counter. The protocol is [`crate::engine::Subscriber`]'s; this driver
//! only moves bytes between it and the sockets.
//!
//! ```no_run
//! use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
//!
//! let events = ProcEvents::subscribe(ProcOptions::default())?;
//! for item in events.take(10) {
//!     match item? {
//!         ProcItem::Event(ev) => println!("{:?}", ev.data),
//!         ProcItem::Lost(loss) => eprintln!("lost {loss:?}"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), cnlink::Error>(())
//! ```

use std::io;
use std::time::{Duration, Instant};

use crate::diagnose;
use crate::engine::{ConfigError, Failure, State, Subscriber, SubscriberConfig};
use crate::host;
use crate::socket::{self, Protocol, RecvBatch, RecvMeta, Socket};
use crate::wire::CN_IDX_PROC;
use crate::Error;

pub use crate::engine::{Event, Loss, Path, ProcCounters, ProcItem};

/// How to subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcOptions {
    /// The events wanted (all by default); at least one known kind ([`crate::wire::EventMask::NONE`] is refused
    /// with [`Error::NoEvents`]).
    pub events: crate::wire::EventMask,
    /// Receive buffer to ask for, in bytes (forced past `rmem_max` when privileged). Each proc message costs about
    /// 1 KiB of it, so the default of 32 MiB absorbs bursts of some 30,000 events while the reader is away.
    pub recv_buffer: usize,
    /// How long to wait for the kernel's ack (it normally arrives before the request's send returns). The probe
    /// for the 6.6 filter waits at most [`crate::engine::subscriber::PROBE_WAIT`] of it.
    pub ack_timeout: Duration,
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// Use the kernel-side filter (6.6+) when `events` is a strict subset.
    pub kernel_filter: bool,
}

impl Default for ProcOptions {
    fn default() -> Self {
        ProcOptions {
            events: crate::wire::EventMask::ALL,
            recv_buffer: 32 << 20,
            ack_timeout: Duration::from_secs(1),
            batch: 256,
            kernel_filter: true,
        }
    }
}

/// What a tap ([`ProcEvents::set_tap`], [`crate::tokio::ProcStream::set_tap`], [`crate::Connector::set_tap`])
/// sees: every datagram as it was received, before it is decoded, every overrun, and every request sent (a
/// connector's tap sees no requests; its socket is [`Path::Main`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum TapEvent<'a> {
    /// A datagram received on `path`, with what the kernel said about it (sender, truncation, credentials).
    Received {
        /// The socket it came in on.
        path: Path,
        /// Sender address and flags.
        meta: &'a RecvMeta,
        /// The bytes, as received.
        datagram: &'a [u8],
    },
    /// The socket on `path` reported an overrun (`ENOBUFS`).
    Overrun {
        /// The socket.
        path: Path,
    },
    /// A subscription request about to be sent to the kernel.
    Sent {
        /// The socket it goes out of.
        path: Path,
        /// The CPU it is sent from, if that matters.
        cpu: Option<u32>,
        /// The bytes.
        datagram: &'a [u8],
    },
}

/// A tap: called for every [`TapEvent`], on the receiving thread, before the engine sees it. Keep it short.
pub type Tap = Box<dyn FnMut(TapEvent<'_>) + Send>;

/// Where a driver keeps its tap. The `Mutex` is never locked (the tap is only called through `&mut`); it keeps the
/// drivers `Sync` although a tap need not be.
#[derive(Default)]
pub(crate) struct TapSlot(Option<std::sync::Mutex<Tap>>);

impl std::fmt::Debug for TapSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_set() { "TapSlot(set)" } else { "TapSlot(none)" })
    }
}

impl TapSlot {
    pub(crate) fn new(tap: Option<Tap>) -> TapSlot {
        TapSlot(tap.map(std::sync::Mutex::new))
    }

    pub(crate) fn set(&mut self, tap: Tap) {
        self.0 = Some(std::sync::Mutex::new(tap));
    }

    pub(crate) fn take(&mut self) -> Option<Tap> {
        self.0.take().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Shows `ev` to the tap, if there is one.
    #[inline]
    pub(crate) fn show(&mut self, ev: TapEvent<'_>) {
        if let Some(m) = &mut self.0 {
            let tap = m.get_mut().unwrap_or_else(|e| e.into_inner());
            tap(ev);
        }
    }
}

/// Size of one receive slot: a proc message is 76 bytes; anything up to a page fits.
const SLOT: usize = 4096;
/// Receive buffer of the probe socket, which sees every proc message on the machine while it waits for an ack.
const PROBE_BUFFER: usize = 1 << 20;

/// A subscription to the proc connector.
pub struct ProcEvents {
    sock: Socket,
    probe: Option<Socket>,
    engine: Subscriber,
    batch: RecvBatch,
    tap: TapSlot,
}

// A subscription can move to another thread and be shared, with or without a tap.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ProcEvents>();
};

impl std::fmt::Debug for ProcEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcEvents")
            .field("sock", &self.sock)
            .field("engine", &self.engine.state())
            .field("tap", &self.tap.is_set())
            .finish()
    }
}

impl ProcEvents {
    /// Subscribes and waits for the kernel's ack.
    pub fn subscribe(opts: ProcOptions) -> Result<ProcEvents, Error> {
        Self::start(opts, None)
    }

    /// Subscribes with a tap that sees the handshake too (see [`ProcEvents::set_tap`]).
    pub fn subscribe_with_tap(opts: ProcOptions, tap: Tap) -> Result<ProcEvents, Error> {
        Self::start(opts, Some(tap))
    }

    fn start(opts: ProcOptions, tap: Option<Tap>) -> Result<ProcEvents, Error> {
        let engine = Subscriber::new(Instant::now(), subscriber_config(&opts)?)?;
        let sock = open_proc_socket(opts.recv_buffer)?;
        // From here on, dropping `events` sends the IGNOREs that undo whatever went out, also on the error paths.
        let mut events =
            ProcEvents { sock, probe: None, engine, batch: RecvBatch::new(opts.batch, SLOT), tap: TapSlot::new(tap) };
        events.handshake()?;
        Ok(events)
    }

    fn handshake(&mut self) -> Result<(), Error> {
        loop {
            if self.engine.probe_wanted() != self.probe.is_some() {
                self.probe = if self.engine.probe_wanted() { Some(open_proc_socket(PROBE_BUFFER)?) } else { None };
            }
            self.flush()?;
            match self.engine.state() {
                State::Subscribing => {}
                State::Subscribed { .. } => {
                    self.probe = None;
                    return Ok(());
                }
                State::Failed(f) => return Err(failure_error(f)),
                State::Closed => return Err(Error::Io(io::ErrorKind::NotConnected.into())),
            }
            let wait = self.engine.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
            let readable = match &self.probe {
                Some(probe) => socket::wait_any([&self.sock, probe], wait)?,
                None => self.sock.wait_readable(wait)?,
            };
            if readable {
                self.drain(Path::Main)?;
                if self.probe.is_some() {
                    self.drain(Path::Probe)?;
                }
            }
            self.run_timers();
        }
    }

    /// Sets a tap that sees every datagram received (before decoding), every overrun and every request sent,
    /// replacing any tap set before. Without one, nothing is done for it.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap.set(tap);
    }

    /// Removes the tap and returns it.
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    /// Receives what is queued (waiting up to `timeout` for the first datagram; `None` waits forever) and
    /// appends the items to `out`. Returns how many were appended; 0 means the timeout passed.
    ///
    /// Drains the socket with as few `recvmmsg` calls as possible, so a caller that sleeps between calls gets
    /// large batches for few wake-ups.
    pub fn recv_items(&mut self, out: &mut Vec<ProcItem>, timeout: Option<Duration>) -> Result<usize, Error> {
        // `None`: forever (also when the timeout is too far off to be represented).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let n = self.engine.drain_items(out);
            if n > 0 {
                return Ok(n);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // A zero wait still drains what is queued.
            self.step(left)?;
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(self.engine.drain_items(out));
            }
        }
    }

    /// One round: waits for the socket (at most `wait`, and no longer than the engine's next timer), drains it,
    /// runs due timers and sends what the engine asks for.
    fn step(&mut self, wait: Option<Duration>) -> Result<(), Error> {
        let timer = self.engine.poll_timeout().map(|t| t.saturating_duration_since(Instant::now()));
        let wait = match (wait, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.sock.wait_readable(wait)? {
            self.drain(Path::Main)?;
        }
        self.run_timers();
        // A resync request that cannot be sent costs only its CPU's early baseline; receiving goes on.
        let _ = self.flush();
        Ok(())
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| now >= t) {
            self.engine.handle_timeout(now);
        }
    }

    /// Receives everything queued on `path`'s socket, without blocking, into the engine.
    fn drain(&mut self, path: Path) -> Result<(), Error> {
        let ProcEvents { sock, probe, engine, batch, tap } = self;
        let sock = match path {
            Path::Main => &*sock,
            Path::Probe => match probe {
                Some(p) => &*p,
                None => return Ok(()),
            },
        };
        loop {
            match sock.recv_batch(batch, false) {
                Ok(n) => {
                    feed(engine, Instant::now(), path, batch, tap);
                    if n < batch.capacity() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overrun(engine, path, tap),
                Err(e) => return Err(e.into()),
            }
        }
        if path == Path::Main && engine.drop_count_wanted() {
            engine.handle_drop_count(Instant::now(), sock.drops().ok().flatten());
        }
        Ok(())
    }

    /// Sends the engine's requests, each from the CPU it names.
    fn flush(&mut self) -> Result<(), Error> {
        let mut pinning = host::Pinning::default();
        let mut result = Ok(());
        while let Some(t) = self.engine.poll_transmit() {
            let sock = match (t.path, &self.probe) {
                (Path::Main, _) => &self.sock,
                (Path::Probe, Some(p)) => p,
                (Path::Probe, None) => continue,
            };
            if t.cpu.is_some_and(|cpu| !pinning.pin(cpu)) {
                // This thread may not run there: the engine gives up on that CPU's ack.
                continue;
            }
            self.tap.show(TapEvent::Sent { path: t.path, cpu: t.cpu, datagram: t.datagram() });
            if let Err(e) = sock.send(t.datagram()) {
                result = Err(send_error(e));
            }
        }
        result
    }

    /// Counters: events delivered, lost, overruns, datagrams rejected because not from the kernel, malformed,
    /// requests sent, resyncs.
    pub fn stats(&self) -> ProcCounters {
        self.engine.counters()
    }

    /// Whether the kernel filters events for this subscription (Linux 6.6+ with a subset of events). Losses are
    /// then counted from the socket's drop counter.
    pub fn kernel_filtered(&self) -> bool {
        self.engine.kernel_filtered()
    }

    /// The socket, e.g. to poll it alongside other descriptors.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }
}

impl Drop for ProcEvents {
    fn drop(&mut self) {
        self.engine.close();
        let _ = self.flush();
    }
}

impl Iterator for ProcEvents {
    type Item = Result<ProcItem, Error>;

    /// Blocks until the next item.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.engine.poll_item() {
                return Some(Ok(item));
            }
            if let Err(e) = self.step(None) {
                return Some(Err(e));
            }
        }
    }
}

/// The engine's configuration from the options and what the machine says about itself.
pub(crate) fn subscriber_config(opts: &ProcOptions) -> Result<SubscriberConfig, Error> {
    Ok(SubscriberConfig {
        events: opts.events,
        kernel_filter: opts.kernel_filter,
        ack_timeout: opts.ack_timeout,
        initial_ack: crate::connector::random_u32()?,
        kernel: host::kernel_release(),
        affinity: host::thread_affinity(),
        online: host::online_cpus(),
    })
}

/// Hands the datagrams of the last receive on `path` to the engine, showing them to the tap first.
pub(crate) fn feed(engine: &mut Subscriber, now: Instant, path: Path, batch: &RecvBatch, tap: &mut TapSlot) {
    for (meta, datagram) in batch.iter() {
        tap.show(TapEvent::Received { path, meta, datagram });
        if meta.truncated {
            engine.handle_truncated(now, path, meta.from, datagram);
        } else {
            engine.handle(now, path, meta.from, datagram);
        }
    }
}

/// Hands an `ENOBUFS` on `path` to the engine, with a fresh look at the CPUs (one may have been hot-plugged).
pub(crate) fn overrun(engine: &mut Subscriber, path: Path, tap: &mut TapSlot) {
    tap.show(TapEvent::Overrun { path });
    if path == Path::Main {
        engine.set_cpus(host::thread_affinity(), host::online_cpus());
    }
    engine.handle_overrun(Instant::now(), path);
}

/// Opens a connector socket joined to the proc group, mapping errors to their causes.
pub(crate) fn open_proc_socket(recv_buffer: usize) -> Result<Socket, Error> {
    let sock = Socket::open(Protocol::Connector).map_err(|e| match e.raw_os_error() {
        Some(libc::EPROTONOSUPPORT) | Some(libc::EAFNOSUPPORT) => Error::NoConnector,
        _ => Error::Io(e),
    })?;
    if recv_buffer > 0 {
        sock.set_recv_buffer(recv_buffer)?;
    }
    sock.add_membership(CN_IDX_PROC).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            Error::PermissionDenied("joining the proc connector group needs CAP_NET_ADMIN before Linux 6.6")
        }
        _ => Error::Io(e),
    })?;
    Ok(sock)
}

/// A failed send to the kernel: `ECONNREFUSED` means the kernel's socket is in another network namespace.
pub(crate) fn send_error(e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Error::ForeignNamespace("network"),
        _ => Error::Io(e),
    }
}

/// The error for a subscription that did not come about.
pub(crate) fn failure_error(f: Failure) -> Error {
    match f {
        Failure::Refused(errno) => Error::Refused(errno),
        Failure::NoAck { waited } => Error::NoAck { timeout: waited, likely: diagnose::likely_no_ack_cause() },
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        match e {
            ConfigError::NoEvents => Error::NoEvents,
        }
    }
}
