//! One publishing session: the window in flight, its acknowledgements, and the cursor they move.
//!
//! A JetStream publish is a core NATS publish with a reply subject; the stream answers there with a `PubAck`
//! (`{"stream":"CNLINK","seq":7,"duplicate":true}`, or `{"error":{...}}`), and with a `503` status when no stream
//! takes the subject. A session subscribes once to `INBOX.*` and publishes record `SEQ` with reply subject
//! `INBOX.SEQ`: an ack names its record, and nothing is allocated per message for the reply but the subject.
//! A new session (after any failure) takes a new inbox, so that late acks of the old one are not taken for new
//! ones.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::header::{HeaderName, HeaderValue};
use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::{Control, PublishConfig, EVENT_SCHEMA, LEDGER_SCHEMA};
use crate::spool::record::RecordKind;
use crate::spool::{SpoolHandle, SpoolReader, SpooledRecord};
use crate::subject_token;

const NATS_MSG_ID: HeaderName = HeaderName::from_static("Nats-Msg-Id");
const CNLINK_SCHEMA: HeaderName = HeaderName::from_static("Cnlink-Schema");

/// Counts not yet added to the status (added once per batch of acks, not per record).
#[derive(Default)]
struct Counts {
    published: u64,
    published_current: u64,
    acked: u64,
    duplicates: u64,
}

/// A publish waiting for its ack.
struct Pending {
    seq: u64,
    current_boot: bool,
    sent: tokio::time::Instant,
    acked: bool,
}

/// What the messages of one (host, boot) start with: the subject up to its last token (`PREFIX.HOST.proc.`) and
/// the `Nats-Msg-Id` up to its number (`HOST:BOOT:`).
struct Ids {
    host: Arc<str>,
    boot: Arc<str>,
    subject: String,
    msg_id: String,
}

impl Ids {
    fn new(prefix: &str, host: &Arc<str>, boot: &Arc<str>) -> Ids {
        Ids {
            host: host.clone(),
            boot: boot.clone(),
            subject: format!("{prefix}.{}.proc.", subject_token(host)),
            msg_id: format!("{host}:{boot}:"),
        }
    }
}

/// A stream's answer to a publish (the fields the publisher reads).
#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u64,
    #[serde(default)]
    description: String,
}

/// The publisher's state across sessions: the acks not yet given to the spool survive a failure.
pub(super) struct Session {
    spool: SpoolHandle,
    prefix: String,
    window: usize,
    ack_timeout: Duration,
    linger: Duration,
    batch: VecDeque<SpooledRecord>,
    in_flight: VecDeque<Pending>,
    acked_through: Option<u64>,
    acked_current: u64,
    acks_held: u32,
    counts: Counts,
    last_persist: Instant,
    /// Acks came since the last failure.
    pub(super) progressed: bool,
    ids: Ids,
}

impl Session {
    pub(super) fn new(spool: &SpoolHandle, config: &PublishConfig) -> Self {
        Session {
            spool: spool.clone(),
            prefix: config.stream.subject_prefix.clone(),
            window: config.window.max(1),
            ack_timeout: config.ack_timeout,
            linger: config.linger,
            batch: VecDeque::new(),
            in_flight: VecDeque::new(),
            acked_through: None,
            acked_current: 0,
            acks_held: 0,
            counts: Counts::default(),
            last_persist: Instant::now(),
            progressed: false,
            ids: Ids::new(&config.stream.subject_prefix, &Arc::from(""), &Arc::from("")),
        }
    }

    /// Publishes until stopped (then `Ok`) or until something fails (then the message).
    pub(super) async fn pump(
        &mut self,
        client: &Client,
        reader: &mut SpoolReader,
        control: &Control,
    ) -> Result<(), String> {
        let inbox = client.new_inbox();
        let mut acks = client.subscribe(format!("{inbox}.*")).await.map_err(|e| format!("subscribe for acks: {e}"))?;
        let outcome = self.publish(client, &inbox, &mut acks, reader, control).await;
        let _ = acks.unsubscribe().await;
        outcome
    }

    async fn publish(
        &mut self,
        client: &Client,
        inbox: &str,
        acks: &mut Subscriber,
        reader: &mut SpoolReader,
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
                let (subject, headers, payload) = self.message(record);
                let mut reply = String::with_capacity(inbox.len() + 21);
                reply.push_str(inbox);
                let _ = write!(reply, ".{seq}");
                client
                    .publish_with_reply_and_headers(subject, reply, headers, payload)
                    .await
                    .map_err(|e| format!("publish: {e}"))?;
                self.counts.published += 1;
                self.counts.published_current += u64::from(current_boot);
                self.in_flight.push_back(Pending {
                    seq,
                    current_boot,
                    sent: tokio::time::Instant::now(),
                    acked: false,
                });
            }
            let Some(front) = self.in_flight.front() else {
                self.give_acks(control);
                // Caught up: wait for new records, then let more come for `linger` (fewer, fuller rounds).
                if tokio::time::timeout(Duration::from_millis(200), control.notify.notified()).await.is_ok()
                    && !self.linger.is_zero()
                    && !control.stop.load(Ordering::SeqCst)
                {
                    let _ = tokio::time::timeout(self.linger, async {
                        while !control.stop.load(Ordering::SeqCst) {
                            control.notify.notified().await;
                        }
                    })
                    .await;
                }
                continue;
            };
            let (front_seq, deadline) = (front.seq, front.sent + self.ack_timeout);
            tokio::select! {
                message = acks.next() => match message {
                    Some(message) => self.take_ack(&message)?,
                    None => return Err("the ack subscription ended".into()),
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(format!("publish of record {front_seq}: no ack within {:?}", self.ack_timeout));
                }
            }
            // Every ack already there, without waiting.
            while let Some(Some(message)) = acks.next().now_or_never() {
                self.take_ack(&message)?;
            }
            while self.in_flight.front().is_some_and(|p| p.acked) {
                let Some(done) = self.in_flight.pop_front() else { break };
                self.counts.acked += 1;
                self.progressed = true;
                self.acked_through = Some(done.seq);
                self.acked_current += u64::from(done.current_boot);
                self.acks_held += 1;
            }
            if self.in_flight.is_empty() || self.acks_held >= 64 {
                self.give_acks(control);
            }
        }
    }

    /// One answer on the session's inbox: marks its record acknowledged, or fails.
    fn take_ack(&mut self, message: &Message) -> Result<(), String> {
        let Some(seq) = message.subject.rsplit('.').next().and_then(|t| t.parse::<u64>().ok()) else {
            return Ok(()); // not one of ours
        };
        if let Some(status) = message.status {
            let why = message.description.as_deref().unwrap_or_default();
            return Err(if status == async_nats::StatusCode::NO_RESPONDERS {
                format!("publish of record {seq}: no stream takes its subject (no responders)")
            } else {
                format!("publish of record {seq}: the server answered {status} {why}")
            });
        }
        let ack: PubAck =
            serde_json::from_slice(&message.payload).map_err(|e| format!("the ack of record {seq}: {e}"))?;
        if let Some(error) = ack.error {
            return Err(format!("publish of record {seq}: {} (code {})", error.description, error.code));
        }
        if let Ok(i) = self.in_flight.binary_search_by_key(&seq, |p| p.seq) {
            let pending = &mut self.in_flight[i];
            if !pending.acked {
                pending.acked = true;
                self.counts.duplicates += u64::from(ack.duplicate);
            }
        }
        Ok(())
    }

    fn message(&mut self, record: SpooledRecord) -> (String, HeaderMap, Bytes) {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        if !(same(&self.ids.host, &record.host_id) && same(&self.ids.boot, &record.boot_id)) {
            self.ids = Ids::new(&self.prefix, &record.host_id, &record.boot_id);
        }
        let mut subject = String::with_capacity(self.ids.subject.len() + record.token.len());
        subject.push_str(&self.ids.subject);
        subject.push_str(&record.token);
        let mut id = String::with_capacity(self.ids.msg_id.len() + 20);
        id.push_str(&self.ids.msg_id);
        let _ = write!(id, "{}", record.seq);
        let schema = match record.kind {
            RecordKind::Ledger => LEDGER_SCHEMA,
            _ => EVENT_SCHEMA,
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, HeaderValue::from(id));
        headers.insert(CNLINK_SCHEMA, schema);
        (subject, headers, record.payload.into())
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
    pub(super) fn abandon(&mut self, reader: &mut SpoolReader, control: &Control) {
        self.give_acks(control);
        self.in_flight.clear();
        self.batch.clear();
        reader.rewind();
    }
}
