//! Process events from the proc connector, on a blocking socket.
//!
//! [`ProcEvents::subscribe`] joins the proc connector's group, sends the subscription and waits for the kernel's
//! ack; the stream then yields [`ProcItem`]s: events, `Lost { count }` records that say exactly how many were
//! lost, and `Overrun` markers. Dropping it unsubscribes.
//!
//! With an event filter that is a strict subset, the Linux 6.6 kernel-side filter is used when the kernel has it
//! (a filtered socket never sees its own ack, so a short-lived second socket watches for it); on older kernels
//! the same filter runs in userspace. Exact loss counts need every proc message, so they are available only when
//! no kernel-side filter is installed.
//!
//! ```no_run
//! use cnlink::proc::{ProcEvents, ProcItem, ProcOptions};
//!
//! let events = ProcEvents::subscribe(ProcOptions::default())?;
//! for item in events.take(10) {
//!     match item? {
//!         ProcItem::Event(ev) => println!("{:?}", ev.data),
//!         ProcItem::Lost { count } => eprintln!("lost {count} events"),
//!         _ => {}
//!     }
//! }
//! # Ok::<(), cnlink::Error>(())
//! ```

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::connector::random_u32;
use crate::diagnose;
use crate::engine::{MatchRule, ProcDecoder, ReplyMatcher};
use crate::socket::{Protocol, RecvBatch, Socket};
use crate::wire::{self, CbId, CnMsgHdr, EventMask, McastOp, ProcInput, CN_IDX_PROC};
use crate::Error;

pub use crate::engine::{Event, ProcItem, Stats};

/// How to subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcOptions {
    /// The events wanted (all by default).
    pub events: EventMask,
    /// Receive buffer to ask for, in bytes (forced past `rmem_max` when privileged). Each proc message costs about
    /// 1 KiB of it, so the default of 32 MiB absorbs bursts of some 30,000 events while the reader is away.
    pub recv_buffer: usize,
    /// How long to wait for the kernel's ack (it normally arrives before the request's send returns).
    pub ack_timeout: Duration,
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// Use the kernel-side filter (6.6+) when `events` is a strict subset.
    pub kernel_filter: bool,
}

impl Default for ProcOptions {
    fn default() -> Self {
        ProcOptions {
            events: EventMask::ALL,
            recv_buffer: 32 << 20,
            ack_timeout: Duration::from_secs(1),
            batch: 256,
            kernel_filter: true,
        }
    }
}

/// Size of one receive slot: a proc message is 76 bytes; anything up to a page fits.
const SLOT: usize = 4096;

/// A subscription to the proc connector.
#[derive(Debug)]
pub struct ProcEvents {
    sub: Subscription,
    pub(crate) rx: Receiver,
    scratch: Vec<ProcItem>,
    kernel_filtered: bool,
    ack_timeout: Duration,
}

/// The socket of a subscription; dropping it sends the matching `IGNORE`.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub(crate) sock: Socket,
    genealogy: ReplyMatcher,
    form: ProcInput,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let ignore = match self.form {
            ProcInput::Legacy(_) => ProcInput::Legacy(McastOp::Ignore),
            ProcInput::Filtered { events, .. } => ProcInput::Filtered { op: McastOp::Ignore, events },
        };
        let _ = send_request(&self.sock, &mut self.genealogy, ignore);
    }
}

#[cfg(feature = "tokio")]
impl crate::socket::async_fd::OwnsSocket for Subscription {}

impl AsRawFd for Subscription {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.sock.as_raw_fd()
    }
}

/// The receive side of a subscription: decoder, batch storage and items not yet handed out.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) decoder: ProcDecoder,
    pub(crate) batch: RecvBatch,
    pub(crate) pending: VecDeque<ProcItem>,
}

impl Receiver {
    /// Receives everything queued on `sock` without blocking.
    pub(crate) fn drain(&mut self, sock: &Socket, out: &mut Vec<ProcItem>) -> Result<(), Error> {
        drain(sock, &mut self.decoder, &mut self.batch, out)
    }
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

/// Sends a subscription request; returns the `ack` value the kernel's answer will carry.
fn send_request(sock: &Socket, genealogy: &mut ReplyMatcher, input: ProcInput) -> Result<u32, Error> {
    let (seq, ack) = genealogy.next_numbers();
    let (data, n) = input.to_bytes();
    let hdr = CnMsgHdr { id: CbId::PROC, seq, ack, ..Default::default() };
    let dgram = wire::datagram(hdr, &data[..n], 0)?;
    sock.send(&dgram).map_err(|e| match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Error::ForeignNamespace("network"),
        _ => Error::Io(e),
    })?;
    Ok(ack.wrapping_add(1))
}

/// Receives on `sock` into `decoder` until it has seen the ack it expects or `timeout` passes.
fn await_ack(
    sock: &Socket,
    decoder: &mut ProcDecoder,
    batch: &mut RecvBatch,
    pending: &mut VecDeque<ProcItem>,
    timeout: Duration,
) -> Result<Option<u32>, Error> {
    let deadline = Instant::now() + timeout;
    let mut items = Vec::new();
    while decoder.ack_result().is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !sock.wait_readable(Some(left))? {
            break;
        }
        drain(sock, decoder, batch, &mut items)?;
        pending.extend(items.drain(..));
    }
    Ok(decoder.ack_result())
}

/// Receives everything queued on `sock` (without blocking) through `decoder` into `out`.
fn drain(
    sock: &Socket,
    decoder: &mut ProcDecoder,
    batch: &mut RecvBatch,
    out: &mut Vec<ProcItem>,
) -> Result<(), Error> {
    loop {
        match sock.recv_batch(batch, false) {
            Ok(n) => {
                for (meta, data) in batch.iter() {
                    decoder.handle(meta.from, data, out);
                }
                if n < batch.capacity() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => decoder.handle_overrun(out),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sends the subscription again from each CPU this thread may run on, and waits for each ack.
///
/// The kernel answers on the CPU that sent the request, through the same per-CPU counter as events, so each ack
/// gives the decoder a fresh `seq` for that CPU: a baseline right after subscribing, and, after an overrun, the
/// exact size of the gap at once instead of whenever that CPU next sends an event. The calling thread moves
/// itself from CPU to CPU (no new task, so no events of its own) and gets its affinity back at the end. A
/// repeated `LISTEN` from the same socket does not change the kernel's listener count.
pub(crate) fn sync_cpus(sub: &mut Subscription, rx: &mut Receiver, timeout: Duration) -> Result<(), Error> {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    let Ok(allowed) = sched_getaffinity(None) else { return Ok(()) };
    let mut result = Ok(());
    for cpu in (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)) {
        let mut one = CpuSet::new();
        one.set(cpu);
        if sched_setaffinity(None, &one).is_err() {
            continue;
        }
        result = send_request(&sub.sock, &mut sub.genealogy, sub.form).and_then(|ack| {
            rx.decoder.expect_ack(ack);
            await_ack(&sub.sock, &mut rx.decoder, &mut rx.batch, &mut rx.pending, timeout).map(drop)
        });
        if result.is_err() {
            break;
        }
    }
    let _ = sched_setaffinity(None, &allowed);
    result
}

impl ProcEvents {
    /// Subscribes and waits for the kernel's ack.
    pub fn subscribe(opts: ProcOptions) -> Result<ProcEvents, Error> {
        let sock = open_proc_socket(opts.recv_buffer)?;
        let mut genealogy = ReplyMatcher::new(MatchRule::AckPlusOne, random_u32()?);
        let mut batch = RecvBatch::new(opts.batch, SLOT);
        let mut pending = VecDeque::new();
        let events = EventMask(opts.events.0 & wire::proc_input::PROC_EVENT_ALL);
        let subset = !events.is_empty() && events != EventMask::ALL;

        if subset && opts.kernel_filter {
            let form = ProcInput::Filtered { op: McastOp::Listen, events };
            if let Some(decoder) = Self::try_kernel_filter(&sock, &mut genealogy, form, opts.ack_timeout)? {
                return Ok(ProcEvents {
                    sub: Subscription { sock, genealogy, form },
                    rx: Receiver { decoder, batch, pending },
                    scratch: Vec::new(),
                    kernel_filtered: true,
                    ack_timeout: opts.ack_timeout,
                });
            }
        }

        let form = ProcInput::Legacy(McastOp::Listen);
        let mut decoder = ProcDecoder::new(events, true);
        decoder.expect_ack(send_request(&sock, &mut genealogy, form)?);
        // From here on, dropping `sub` unsubscribes, also on the error paths below.
        let sub = Subscription { sock, genealogy, form };
        match await_ack(&sub.sock, &mut decoder, &mut batch, &mut pending, opts.ack_timeout)? {
            Some(0) => {}
            Some(err) => return Err(Error::Refused(err)),
            None => return Err(Error::NoAck { timeout: opts.ack_timeout, likely: diagnose::likely_no_ack_cause() }),
        }
        let mut events = ProcEvents {
            sub,
            rx: Receiver { decoder, batch, pending },
            scratch: Vec::new(),
            kernel_filtered: false,
            ack_timeout: opts.ack_timeout,
        };
        sync_cpus(&mut events.sub, &mut events.rx, opts.ack_timeout)?;
        Ok(events)
    }

    /// Sends the 6.6 filtered subscription and watches for its ack from a second, unfiltered socket.
    /// Returns the decoder to use, or `None` when the kernel did not answer (it predates the filter).
    fn try_kernel_filter(
        sock: &Socket,
        genealogy: &mut ReplyMatcher,
        form: ProcInput,
        timeout: Duration,
    ) -> Result<Option<ProcDecoder>, Error> {
        let ProcInput::Filtered { events, .. } = form else { return Ok(None) };
        let probe = open_proc_socket(0)?;
        let mut watcher = ProcDecoder::new(EventMask::ALL, false);
        watcher.expect_ack(send_request(sock, genealogy, form)?);
        let mut batch = RecvBatch::new(64, SLOT);
        let mut discard = VecDeque::new();
        match await_ack(&probe, &mut watcher, &mut batch, &mut discard, timeout)? {
            Some(0) => Ok(Some(ProcDecoder::new(events, false))),
            Some(err) => Err(Error::Refused(err)),
            None => Ok(None),
        }
    }

    /// Receives what is queued (waiting up to `timeout` for the first datagram; `None` waits forever) and
    /// appends the items to `out`. Returns how many were appended; 0 means the timeout passed.
    ///
    /// Drains the socket with as few `recvmmsg` calls as possible, so a caller that sleeps between calls gets
    /// large batches for few wake-ups.
    pub fn recv_items(&mut self, out: &mut Vec<ProcItem>, timeout: Option<Duration>) -> Result<usize, Error> {
        let before = out.len();
        out.extend(self.rx.pending.drain(..));
        if out.len() > before {
            return Ok(out.len() - before);
        }
        if !self.sub.sock.wait_readable(timeout)? {
            return Ok(0);
        }
        let overruns = self.rx.decoder.stats().overruns;
        self.rx.drain(&self.sub.sock, out)?;
        if !self.kernel_filtered && self.rx.decoder.stats().overruns > overruns {
            // Close the gaps now: each CPU's next message tells exactly how many were lost.
            sync_cpus(&mut self.sub, &mut self.rx, self.ack_timeout)?;
            out.extend(self.rx.pending.drain(..));
        }
        Ok(out.len() - before)
    }

    /// Counters: events delivered, lost, overruns, datagrams rejected because not from the kernel, malformed.
    pub fn stats(&self) -> Stats {
        self.rx.decoder.stats()
    }

    /// Whether the kernel filters events for this subscription (Linux 6.6+ with a subset of events). Loss is
    /// then reported as `Overrun` without a count.
    pub fn kernel_filtered(&self) -> bool {
        self.kernel_filtered
    }

    /// The socket, e.g. to poll it alongside other descriptors.
    pub fn socket(&self) -> &Socket {
        &self.sub.sock
    }

    /// Splits into the subscription guard and the receive state (for the async driver).
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(self) -> (Subscription, Receiver) {
        (self.sub, self.rx)
    }
}

impl Iterator for ProcEvents {
    type Item = Result<ProcItem, Error>;

    /// Blocks until the next item.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.rx.pending.pop_front() {
                return Some(Ok(item));
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            let r = self.recv_items(&mut scratch, None);
            self.rx.pending.extend(scratch.drain(..));
            self.scratch = scratch;
            if let Err(e) = r {
                return Some(Err(e));
            }
        }
    }
}
