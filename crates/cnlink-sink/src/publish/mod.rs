//! The JetStream publisher: reads the spool in order and publishes each record, on its own thread with a
//! current-thread tokio runtime inside, so the caller stays synchronous.
//!
//! - Subject `PREFIX.HOST.proc.TOKEN` (host made safe by [`crate::subject_token`]).
//! - Headers: `Nats-Msg-Id: HOST_ID:BOOT_ID:SEQ` on every record (the server drops repeats within its duplicate
//!   window), and `Cnlink-Schema: cnlink-ledger/1` on ledger records. Events carry no other header: the subject
//!   says what they are and their schema is [`EVENT_SCHEMA`] (a later schema will name itself in
//!   `Cnlink-Schema`). Every header costs the publisher allocations per message.
//! - At most `window` publishes wait for their acknowledgement; the cursor only moves over a contiguous
//!   acknowledged prefix. Each publish names a reply subject `INBOX.SEQ` on one subscription of the session, so
//!   an ack finds its record by its subject (no request machinery per message; see `session`).
//! - Any failure (no connection, an ack timeout, a missing stream) drops what is in flight, waits (100 ms,
//!   doubling to `max_backoff`), and publishes again from the cursor; the server removes the repeats.

mod options;
mod session;
mod stream;

pub use options::{Auth, ConnectConfig, PublishConfig, StreamConfig, Tls};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::Notify;

use crate::spool::{SpoolHandle, SpoolStats};
use session::Session;

/// The schema of event records: implied by the absence of a `Cnlink-Schema` header.
pub const EVENT_SCHEMA: &str = "cnlink-proc/1";
/// The schema header of ledger records.
pub const LEDGER_SCHEMA: &str = "cnlink-ledger/1";

/// What the publisher is doing and has done (counters since it started).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStatus {
    /// Connected to a server.
    pub connected: bool,
    /// The stream is there and takes the subjects.
    pub stream_ready: bool,
    /// Publishes sent (repeats included).
    pub published: u64,
    /// Acknowledgements received.
    pub acked: u64,
    /// Acknowledgements that said "duplicate" (a repeat the server removed).
    pub duplicates: u64,
    /// Failures (connect, stream, publish, ack), each followed by a retry.
    pub errors: u64,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// Differences between the existing stream and the configuration.
    pub warnings: Vec<String>,
    /// The outcome of the first attempt: `Some(Ok)` once connected with the stream ready, `Some(Err)` with
    /// the first failure's message.
    pub first_outcome: Option<Result<(), String>>,
}

struct Control {
    stop: AtomicBool,
    notify: Notify,
    status: Mutex<PublisherStatus>,
    changed: Condvar,
}

impl Control {
    fn update(&self, f: impl FnOnce(&mut PublisherStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut status);
        self.changed.notify_all();
    }

    fn fail(&self, message: String) {
        self.update(|s| {
            s.errors += 1;
            if s.first_outcome.is_none() {
                s.first_outcome = Some(Err(message.clone()));
            }
            s.last_error = Some(message);
        });
    }
}

/// A running publisher. Dropping it stops it (without waiting for the spool to drain: see
/// [`drain`](Self::drain)).
pub struct Publisher {
    control: Arc<Control>,
    spool: SpoolHandle,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts publishing the spool's records on a new thread. Connecting happens there: the first outcome
    /// (connected, or why not) is in [`status`](Self::status) and [`wait_ready`](Self::wait_ready).
    pub fn start(spool: SpoolHandle, config: PublishConfig) -> std::io::Result<Publisher> {
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            notify: Notify::new(),
            status: Mutex::new(PublisherStatus::default()),
            changed: Condvar::new(),
        });
        let waker = control.clone();
        spool.set_waker(move || waker.notify.notify_one());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let thread = {
            let control = control.clone();
            let spool = spool.clone();
            std::thread::Builder::new()
                .name("cnlink-publish".into())
                .spawn(move || runtime.block_on(run(spool, config, control)))?
        };
        Ok(Publisher { control, spool, thread: Some(thread) })
    }

    /// Waits up to `timeout` for the first outcome: `Ok` once connected with the stream ready, or the first
    /// failure's message (the publisher keeps trying; the spool keeps filling). `Err` with "no answer" when
    /// neither came in time.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut status = self.control.status.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = &status.first_outcome {
                return outcome.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no answer from the servers within {timeout:?}"));
            }
            status = self.control.changed.wait_timeout(status, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The publisher's status and counters.
    pub fn status(&self) -> PublisherStatus {
        self.control.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spool's counters (lag, bytes, losses).
    pub fn spool_stats(&self) -> SpoolStats {
        self.spool.stats()
    }

    /// Waits up to `timeout` until every record written so far is acknowledged (or evicted). True if so.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.spool.stats().lag_records == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.control.notify.notify_one();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the thread and writes the cursor.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.notify.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.spool.persist();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn run(spool: SpoolHandle, config: PublishConfig, control: Arc<Control>) {
    let mut backoff = Backoff::new(config.max_backoff);
    let client = loop {
        if control.stop.load(Ordering::SeqCst) {
            return;
        }
        match config.connect.connect().await {
            Ok(client) => break client,
            Err(message) => {
                control.fail(message);
                backoff.wait(&control).await;
            }
        }
    };
    control.update(|s| s.connected = true);
    // The context makes the stream; publishing and its acks go through the client (see `session`).
    let js = jetstream::ContextBuilder::new().timeout(config.ack_timeout).build(client.clone());
    let mut reader = spool.reader();
    let mut session = Session::new(&spool, &config);
    while !control.stop.load(Ordering::SeqCst) {
        match stream::ensure_stream(&js, &config.stream).await {
            Ok(warnings) => control.update(|s| {
                s.stream_ready = true;
                s.warnings = warnings;
                s.first_outcome.get_or_insert(Ok(()));
            }),
            Err(message) => {
                control.update(|s| s.stream_ready = false);
                control.fail(message);
                backoff.wait(&control).await;
                continue;
            }
        }
        match session.pump(&client, &mut reader, &control).await {
            Ok(()) => break,
            Err(message) => {
                control.fail(message);
                session.abandon(&mut reader, &control);
                backoff.wait(&control).await;
            }
        }
        control.update(|s| s.connected = client.connection_state() == async_nats::connection::State::Connected);
        if session.progressed {
            backoff.reset();
            session.progressed = false;
        }
    }
    let _ = client.flush().await;
    let _ = spool.persist();
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff { next: Duration::from_millis(100), max }
    }

    fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }

    /// Sleeps (cut short by a stop), then doubles the next pause.
    async fn wait(&mut self, control: &Control) {
        let until = tokio::time::Instant::now() + self.next;
        while !control.stop.load(Ordering::SeqCst) && tokio::time::Instant::now() < until {
            let _ = tokio::time::timeout_at(until, control.notify.notified()).await;
        }
        self.next = (self.next * 2).min(self.max);
    }
}
