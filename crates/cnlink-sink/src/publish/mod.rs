//! The JetStream publisher: reads the spool in order and publishes each record, on its own thread with a
//! current-thread tokio runtime inside, so the caller stays synchronous.
//!
//! - Subject `PREFIX.HOST.proc.TOKEN` (host made safe by [`subject_token`]).
//! - Headers: `Nats-Msg-Id: HOST_ID:BOOT_ID:SEQ` (the server drops repeats within its duplicate window),
//!   `Cnlink-Host`, `Cnlink-Boot`, `Cnlink-Seq`, and `Cnlink-Schema` (`cnlink-proc/1` or `cnlink-ledger/1`).
//! - At most `window` publishes wait for their acknowledgement; acknowledgements are taken in spool order, so
//!   the cursor only moves over a contiguous acknowledged prefix.
//! - Any failure (no connection, an ack timeout, a missing stream) drops what is in flight, waits (100 ms,
//!   doubling to `max_backoff`), and publishes again from the cursor; the server removes the repeats.

mod options;
mod stream;

pub use options::{Auth, ConnectConfig, PublishConfig, StreamConfig, Tls};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use async_nats::HeaderMap;
use tokio::sync::Notify;

use crate::spool::record::RecordKind;
use crate::spool::{SpoolHandle, SpoolStats, SpooledRecord};
use crate::subject_token;

/// The schema header of event records.
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
    let js = jetstream::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .max_ack_inflight(config.window.max(1) * 2)
        .build(client.clone());
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
        match session.pump(&js, &mut reader, &control).await {
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

/// Counts not yet added to the status (added once per batch of acks, not per record).
#[derive(Default)]
struct Counts {
    published: u64,
    published_current: u64,
    acked: u64,
    duplicates: u64,
}

struct InFlight {
    seq: u64,
    current_boot: bool,
    ack: PublishAckFuture,
}

/// One publishing session's state: the window in flight and the acks not yet given to the spool.
struct Session {
    spool: SpoolHandle,
    prefix: String,
    window: usize,
    batch: VecDeque<SpooledRecord>,
    in_flight: VecDeque<InFlight>,
    acked_through: Option<u64>,
    acked_current: u64,
    acks_held: u32,
    counts: Counts,
    last_persist: Instant,
    progressed: bool,
    host: (Arc<str>, String),
}

impl Session {
    fn new(spool: &SpoolHandle, config: &PublishConfig) -> Self {
        Session {
            spool: spool.clone(),
            prefix: config.stream.subject_prefix.clone(),
            window: config.window.max(1),
            batch: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked_through: None,
            acked_current: 0,
            acks_held: 0,
            counts: Counts::default(),
            last_persist: Instant::now(),
            progressed: false,
            host: (Arc::from(""), String::new()),
        }
    }

    /// Publishes until stopped (then `Ok`) or until something fails (then the message).
    async fn pump(
        &mut self,
        js: &jetstream::Context,
        reader: &mut crate::spool::SpoolReader,
        control: &Control,
    ) -> Result<(), String> {
        let mut scratch = Vec::new();
        loop {
            if control.stop.load(Ordering::SeqCst) {
                self.give_acks(control);
                return Ok(());
            }
            while self.in_flight.len() < self.window {
                if self.batch.is_empty() {
                    scratch.clear();
                    reader.read_batch(self.window - self.in_flight.len(), &mut scratch);
                    self.batch.extend(scratch.drain(..));
                }
                let Some(record) = self.batch.pop_front() else {
                    break;
                };
                let current_boot = *record.boot_id == *self.spool.boot_id();
                let seq = record.seq;
                let (subject, publish) = self.message(record);
                let ack = js.send_publish(subject, publish).await.map_err(|e| format!("publish: {e}"))?;
                self.counts.published += 1;
                self.counts.published_current += u64::from(current_boot);
                self.in_flight.push_back(InFlight { seq, current_boot, ack });
            }
            let Some(next) = self.in_flight.pop_front() else {
                self.give_acks(control);
                let _ = tokio::time::timeout(Duration::from_millis(200), control.notify.notified()).await;
                continue;
            };
            let ack = next.ack.await.map_err(|e| format!("publish of record {}: {e}", next.seq))?;
            self.counts.acked += 1;
            self.counts.duplicates += u64::from(ack.duplicate);
            self.progressed = true;
            self.acked_through = Some(next.seq);
            self.acked_current += u64::from(next.current_boot);
            self.acks_held += 1;
            if self.in_flight.is_empty() || self.acks_held >= 64 {
                self.give_acks(control);
            }
        }
    }

    fn message(&mut self, record: SpooledRecord) -> (String, PublishMessage) {
        if !Arc::ptr_eq(&self.host.0, &record.host_id) {
            self.host = (record.host_id.clone(), subject_token(&record.host_id));
        }
        let subject = format!("{}.{}.proc.{}", self.prefix, self.host.1, record.token);
        let schema = match record.kind {
            RecordKind::Ledger => LEDGER_SCHEMA,
            _ => EVENT_SCHEMA,
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{}:{}:{}", record.host_id, record.boot_id, record.seq).as_str());
        headers.insert("Cnlink-Host", &*record.host_id);
        headers.insert("Cnlink-Boot", &*record.boot_id);
        headers.insert("Cnlink-Seq", record.seq.to_string().as_str());
        headers.insert("Cnlink-Schema", schema);
        let publish = PublishMessage::build().payload(record.payload.into()).headers(headers);
        (subject, publish)
    }

    /// Moves the spool's cursor over the acknowledged prefix (writing it at most every 200 ms), and adds the
    /// counts to the status.
    fn give_acks(&mut self, control: &Control) {
        let counts = std::mem::take(&mut self.counts);
        if counts.published_current > 0 {
            self.spool.note_published(counts.published_current);
        }
        if counts.published + counts.acked > 0 {
            control.update(|s| {
                s.published += counts.published;
                s.acked += counts.acked;
                s.duplicates += counts.duplicates;
                // Acks came: connected, whatever the state was after the last failure.
                s.connected |= counts.acked > 0;
            });
        }
        if let Some(seq) = self.acked_through.take() {
            self.spool.ack_through(seq, self.acked_current);
            self.acked_current = 0;
            self.acks_held = 0;
        }
        if self.last_persist.elapsed() >= Duration::from_millis(200) {
            let _ = self.spool.persist();
            self.last_persist = Instant::now();
        }
    }

    /// After a failure: keeps the acks received, forgets what is in flight, and reads again from the cursor.
    fn abandon(&mut self, reader: &mut crate::spool::SpoolReader, control: &Control) {
        self.give_acks(control);
        self.in_flight.clear();
        self.batch.clear();
        reader.rewind();
    }
}
