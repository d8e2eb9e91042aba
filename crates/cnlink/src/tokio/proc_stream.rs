//! [`ProcStream`]: proc events as an async stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::mpsc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::time::Sleep;

use crate::engine::{Path, State, Subscriber, Transmit};
use crate::host;
use crate::proc::{self, ProcCounters, ProcItem, ProcOptions, Tap, TapEvent, TapSlot};
use crate::socket::{async_fd, RecvBatch, Socket};
use crate::Error;

/// Datagrams per `recvmmsg` batch times this is the most one poll receives before it lets other tasks run.
const BATCHES_PER_POLL: usize = 8;

/// Proc events as an async stream: the same subscription as [`crate::proc::ProcEvents`], on tokio's reactor.
/// Dropping it unsubscribes.
///
/// It never blocks the executor: the socket is non-blocking, timers are tokio timers, and the per-CPU requests of
/// a resync (which must be sent from each CPU in turn) go to a thread of its own that moves itself from CPU to
/// CPU, so no runtime thread's affinity changes. Needs a runtime with IO and time enabled.
pub struct ProcStream {
    fd: AsyncFd<Socket>,
    probe: Option<AsyncFd<Socket>>,
    engine: Subscriber,
    batch: RecvBatch,
    timer: Pin<Box<Sleep>>,
    pinner: Option<Pinner>,
    tap: TapSlot,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<ProcStream>();
};

impl std::fmt::Debug for ProcStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcStream")
            .field("sock", self.fd.get_ref())
            .field("engine", &self.engine.state())
            .field("tap", &self.tap.is_set())
            .finish()
    }
}

impl ProcStream {
    /// Subscribes and waits for the kernel's ack (without blocking the runtime).
    pub async fn subscribe(opts: ProcOptions) -> Result<ProcStream, Error> {
        Self::start(opts, None).await
    }

    /// Subscribes with a tap that sees the handshake too (see [`ProcStream::set_tap`]).
    pub async fn subscribe_with_tap(opts: ProcOptions, tap: Tap) -> Result<ProcStream, Error> {
        Self::start(opts, Some(tap)).await
    }

    async fn start(opts: ProcOptions, tap: Option<Tap>) -> Result<ProcStream, Error> {
        let engine = Subscriber::new(Instant::now(), proc::subscriber_config(&opts)?)?;
        let sock = proc::open_proc_socket(opts.recv_buffer)?;
        sock.set_nonblocking(true)?;
        // From here on, dropping `stream` sends the IGNOREs that undo whatever went out, also on the error paths.
        let mut stream = ProcStream {
            fd: async_fd::register(sock)?,
            probe: None,
            engine,
            batch: RecvBatch::new(opts.batch, 4096),
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            pinner: None,
            tap: TapSlot::new(tap),
        };
        std::future::poll_fn(|cx| stream.poll_until(cx, |e| e.state() != State::Subscribing)).await?;
        match stream.engine.state() {
            State::Subscribed { .. } => Ok(stream),
            State::Failed(f) => Err(proc::failure_error(f)),
            State::Subscribing | State::Closed => Err(Error::Io(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Waits until items are available and appends them all to `out`; returns how many.
    ///
    /// Cancel safe: received items stay in the stream until a call returns them, so nothing is lost if the
    /// future is dropped before it completes.
    pub async fn recv_items(&mut self, out: &mut Vec<ProcItem>) -> Result<usize, Error> {
        std::future::poll_fn(|cx| self.poll_items(cx, out)).await
    }

    /// Counters, as [`crate::proc::ProcEvents::stats`].
    pub fn stats(&self) -> ProcCounters {
        self.engine.counters()
    }

    /// Whether the kernel filters for this subscription.
    pub fn kernel_filtered(&self) -> bool {
        self.engine.kernel_filtered()
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        self.fd.get_ref()
    }

    /// Sets a tap, as [`crate::proc::ProcEvents::set_tap`]; it runs inside `poll`, so keep it short.
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap.set(tap);
    }

    /// Removes the tap and returns it.
    pub fn take_tap(&mut self) -> Option<Tap> {
        self.tap.take()
    }

    fn poll_items(&mut self, cx: &mut Context<'_>, out: &mut Vec<ProcItem>) -> Poll<Result<usize, Error>> {
        ready!(self.poll_until(cx, Subscriber::has_items))?;
        Poll::Ready(Ok(self.engine.drain_items(out)))
    }

    /// Moves the engine along (sends what it asks for, receives, runs its timer) until `done` holds. Returns
    /// `Pending` with wakers registered when nothing is ready, or after [`BATCHES_PER_POLL`] batches so that a
    /// storm of datagrams the filter drops does not hold the thread.
    fn poll_until(&mut self, cx: &mut Context<'_>, done: fn(&Subscriber) -> bool) -> Poll<Result<(), Error>> {
        let mut budget = BATCHES_PER_POLL;
        loop {
            let handshake = self.engine.state() == State::Subscribing;
            if let Err(e) = self.sync_probe().and_then(|()| self.flush()) {
                // Once subscribed, a resync request that cannot be sent costs only its CPU's early baseline.
                if handshake {
                    return Poll::Ready(Err(e));
                }
            }
            if done(&self.engine) || matches!(self.engine.state(), State::Failed(_) | State::Closed) {
                return Poll::Ready(Ok(()));
            }
            let mut progress = false;
            let ProcStream { fd, probe, engine, batch, tap, .. } = self;
            for (path, fd) in [(Path::Main, Some(fd)), (Path::Probe, probe.as_mut())] {
                let Some(fd) = fd else { continue };
                match poll_receive(fd, cx, path, engine, batch, tap) {
                    Poll::Ready(Ok(())) => progress = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if let Some(at) = self.engine.poll_timeout() {
                let at = tokio::time::Instant::from_std(at);
                if self.timer.deadline() != at {
                    self.timer.as_mut().reset(at);
                }
                if self.timer.as_mut().poll(cx).is_ready() {
                    self.engine.handle_timeout(Instant::now());
                    progress = true;
                }
            }
            if !progress {
                return Poll::Pending;
            }
            budget -= 1;
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
    }

    /// Opens the probe while the engine wants it, and closes it after.
    fn sync_probe(&mut self) -> Result<(), Error> {
        if self.engine.probe_wanted() == self.probe.is_some() {
            return Ok(());
        }
        self.probe = None;
        if self.engine.probe_wanted() {
            let probe = proc::open_proc_socket(1 << 20)?;
            probe.set_nonblocking(true)?;
            self.probe = Some(async_fd::register(probe)?);
        }
        Ok(())
    }

    /// Sends the engine's requests: those for any CPU at once (a send to the kernel does not block), those for one
    /// CPU through the pinning thread.
    fn flush(&mut self) -> Result<(), Error> {
        let mut result = Ok(());
        while let Some(t) = self.engine.poll_transmit() {
            self.tap.show(TapEvent::Sent { path: t.path, cpu: t.cpu, datagram: t.datagram() });
            let sent = match (t.cpu, t.path, &self.probe) {
                (Some(_), _, _) => self.pinner().map(|p| p.send(t)),
                (None, Path::Main, _) => self.fd.get_ref().send(t.datagram()).map(drop).map_err(proc::send_error),
                (None, Path::Probe, Some(p)) => p.get_ref().send(t.datagram()).map(drop).map_err(proc::send_error),
                (None, Path::Probe, None) => Ok(()),
            };
            if let Err(e) = sent {
                result = Err(e);
            }
        }
        result
    }

    fn pinner(&mut self) -> Result<&Pinner, Error> {
        if self.pinner.is_none() {
            self.pinner = Some(Pinner::spawn(self.fd.get_ref().try_clone()?)?);
        }
        Ok(self.pinner.as_ref().expect("set just above"))
    }
}

/// Receives one batch from `fd` into the engine. `Ready(Ok)` when something happened (datagrams, an overrun, or
/// the socket found empty, whose readiness is then cleared); `Pending` when it is not readable.
fn poll_receive(
    fd: &mut AsyncFd<Socket>,
    cx: &mut Context<'_>,
    path: Path,
    engine: &mut Subscriber,
    batch: &mut RecvBatch,
    tap: &mut TapSlot,
) -> Poll<Result<(), Error>> {
    let mut guard = ready!(fd.poll_read_ready_mut(cx))?;
    match guard.get_inner_mut().recv_batch(batch, false) {
        Ok(_) => proc::feed(engine, Instant::now(), path, batch, tap),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            guard.clear_ready();
            if path == Path::Main && engine.drop_count_wanted() {
                engine.handle_drop_count(Instant::now(), guard.get_inner().drops().ok().flatten());
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => proc::overrun(engine, path, tap),
        Err(e) => return Poll::Ready(Err(e.into())),
    }
    Poll::Ready(Ok(()))
}

impl Drop for ProcStream {
    fn drop(&mut self) {
        self.engine.close();
        let _ = self.flush();
    }
}

impl futures_core::Stream for ProcStream {
    type Item = Result<ProcItem, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(item) = this.engine.poll_item() {
            return Poll::Ready(Some(Ok(item)));
        }
        match ready!(this.poll_until(cx, Subscriber::has_items)) {
            Ok(()) => Poll::Ready(this.engine.poll_item().map(Ok)),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }
}

/// A thread that sends requests from the CPU each names: it moves itself there, sends, and gets its affinity
/// back once it has nothing left to send. It ends when the stream drops its end of the queue.
#[derive(Debug)]
struct Pinner {
    jobs: mpsc::Sender<Transmit>,
}

impl Pinner {
    /// Starts the thread with its own descriptor of the stream's socket (sends through it come from the same
    /// socket).
    fn spawn(sock: Socket) -> Result<Pinner, Error> {
        let (jobs, queue) = mpsc::channel::<Transmit>();
        std::thread::Builder::new().name("cnlink-pin".into()).spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut pinning = host::Pinning::default();
                let mut next = Some(first);
                while let Some(t) = next {
                    // A CPU this thread may not run on is skipped: the engine gives up on that ack.
                    if t.cpu.is_none_or(|cpu| pinning.pin(cpu)) {
                        let _ = sock.send(t.datagram());
                    }
                    next = queue.try_recv().ok();
                }
            }
        })?;
        Ok(Pinner { jobs })
    }

    fn send(&self, t: Transmit) {
        // The thread only ends when this sender is dropped.
        let _ = self.jobs.send(t);
    }
}
