//! One publishing session: the window in flight, its acknowledgements, and the cursor they move.
//!
//! A JetStream publish is a core NATS publish with a reply subject; the stream answers there with a `PubAck`
//! (`{"stream":"CNLINK","seq":7,"duplicate":true}`, or `{"error":{...}}`), and with a `503` status when no stream
//! takes the subject. A session subscribes once to `INBOX.*` and publishes record `SEQ` with reply subject
//! `INBOX.SEQ`: an ack names its record, and nothing is allocated per message for the reply but the subject.
//! A new session (after any failure) takes a new inbox, so that late acks of the old one are not taken for new
//! ones.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::header::{HeaderName, HeaderValue};
use async_nats::{Client, HeaderMap, Message, Subject, Subscriber};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;

use super::{Control, PublishConfig, LEDGER_SCHEMA};
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
/// the `Nats-Msg-Id` up to its number (`HOST:BOOT:`); and the subjects made so far, each checked once and then
/// shared by every message sent to it.
struct Ids {
    host: Arc<str>,
    boot: Arc<str>,
    subject: String,
    msg_id: String,
    subjects: Vec<(Arc<str>, Subject)>,
}

impl Ids {
    fn new(prefix: &str, host: &Arc<str>, boot: &Arc<str>) -> Ids {
        Ids {
            host: host.clone(),
            boot: boot.clone(),
            subject: format!("{prefix}.{}.proc.", subject_token(host)),
            msg_id: format!("{host}:{boot}:"),
            subjects: Vec::new(),
        }
    }

    /// The subject of records with `token` (the client does not check subjects: this does, once each).
    fn subject(&mut self, token: &Arc<str>) -> Result<Subject, String> {
        if let Some((_, subject)) = self.subjects.iter().find(|(t, _)| Arc::ptr_eq(t, token) || **t == **token) {
            return Ok(subject.clone());
        }
        let subject = Subject::from(format!("{}{}", self.subject, subject_token(token)));
        if !subject.is_valid() {
            return Err(format!("{subject:?} is not a valid NATS subject (check the subject prefix)"));
        }
        // The first clone makes its bytes shared: every later one is a reference count, not a copy.
        if self.subjects.len() < 256 {
            self.subjects.push((token.clone(), subject.clone()));
        }
        Ok(subject)
    }
}

/// Reply subjects (`INBOX.SEQ`), cut from one buffer rather than allocated one by one.
#[derive(Default)]
struct Replies {
    buf: BytesMut,
}

impl Replies {
    fn reply(&mut self, inbox: &str, seq: u64) -> Subject {
        if self.buf.capacity() - self.buf.len() < inbox.len() + 21 {
            self.buf.reserve(64 << 10);
        }
        self.buf.extend_from_slice(inbox.as_bytes());
        self.buf.extend_from_slice(b".");
        self.buf.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        let bytes = self.buf.split().freeze();
        // An inbox is ASCII, and so is a number.
        Subject::from_utf8(bytes).unwrap_or_else(|_| Subject::from(format!("{inbox}.{seq}")))
    }
}

/// The answer to most publishes, read without a parser: `{"stream":"NAME","seq":N}`, perhaps with
/// `,"domain":"D"` and `,"duplicate":true`. Some(duplicate) when the payload has exactly that shape and no
/// escape, else None (then serde reads it, errors included).
fn plain_ack(payload: &[u8]) -> Option<bool> {
    if payload.contains(&b'\\') {
        return None;
    }
    let rest = payload.strip_prefix(b"{\"stream\":\"")?.strip_suffix(b"}")?;
    let name_end = rest.iter().position(|&b| b == b'"')?;
    let mut rest = rest[name_end + 1..].strip_prefix(b",\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    rest = &rest[digits..];
    if let Some(after) = rest.strip_prefix(b",\"domain\":\"") {
        let end = after.iter().position(|&b| b == b'"')?;
        rest = &after[end + 1..];
    }
    match rest {
        b"" => Some(false),
        b",\"duplicate\":true" => Some(true),
        _ => None,
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
    replies: Replies,
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
            replies: Replies::default(),
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
                let (subject, headers, payload) = self.message(record)?;
                let reply = self.replies.reply(inbox, seq);
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
        let duplicate = match plain_ack(&message.payload) {
            Some(duplicate) => duplicate,
            None => {
                let ack: PubAck =
                    serde_json::from_slice(&message.payload).map_err(|e| format!("the ack of record {seq}: {e}"))?;
                if let Some(error) = ack.error {
                    return Err(format!("publish of record {seq}: {} (code {})", error.description, error.code));
                }
                ack.duplicate
            }
        };
        if let Ok(i) = self.in_flight.binary_search_by_key(&seq, |p| p.seq) {
            let pending = &mut self.in_flight[i];
            if !pending.acked {
                pending.acked = true;
                self.counts.duplicates += u64::from(duplicate);
            }
        }
        Ok(())
    }

    fn message(&mut self, record: SpooledRecord) -> Result<(Subject, HeaderMap, Bytes), String> {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        if !(same(&self.ids.host, &record.host_id) && same(&self.ids.boot, &record.boot_id)) {
            self.ids = Ids::new(&self.prefix, &record.host_id, &record.boot_id);
        }
        let subject = self.ids.subject(&record.token)?;
        let mut id = String::with_capacity(self.ids.msg_id.len() + 20);
        id.push_str(&self.ids.msg_id);
        id.push_str(itoa::Buffer::new().format(record.seq));
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MSG_ID, HeaderValue::from(id));
        if record.kind == RecordKind::Ledger {
            headers.insert(CNLINK_SCHEMA, LEDGER_SCHEMA);
        }
        Ok((subject, headers, record.payload))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_acks_are_read_without_a_parser() {
        assert_eq!(plain_ack(br#"{"stream":"CNLINK","seq":7}"#), Some(false));
        assert_eq!(plain_ack(br#"{"stream":"CNLINK","seq":7,"duplicate":true}"#), Some(true));
        assert_eq!(plain_ack(br#"{"stream":"S","seq":1,"domain":"hub","duplicate":true}"#), Some(true));
        assert_eq!(plain_ack(br#"{"stream":"a}b{","seq":12}"#), Some(false));
    }

    #[test]
    fn other_answers_go_to_the_parser() {
        for other in [
            &br#"{"error":{"code":503,"err_code":10077,"description":"x"}}"#[..],
            br#"{"stream":"S","seq":7,"error":{"code":1}}"#,
            br#"{"stream":"S\"x","seq":7}"#,
            br#"{"stream":"S","seq":,"duplicate":true}"#,
            br#"{"stream":"S","seq":7,"duplicate":false}"#,
            br#"{"stream":"S","seq":7,"val":"3"}"#,
            br#"{"stream":"S","seq":7"#,
            b"",
        ] {
            assert_eq!(plain_ack(other), None, "{}", String::from_utf8_lossy(other));
        }
        // What the parser makes of the same answers.
        let ack: PubAck = serde_json::from_slice(br#"{"stream":"S","seq":7,"duplicate":false}"#).unwrap();
        assert!(!ack.duplicate && ack.error.is_none());
    }

    #[test]
    fn replies_are_distinct_and_name_their_record() {
        let mut replies = Replies::default();
        let subjects: Vec<Subject> = (0..20_000u64).map(|seq| replies.reply("_INBOX.abc", seq)).collect();
        for (seq, subject) in subjects.iter().enumerate() {
            assert_eq!(subject.as_str(), format!("_INBOX.abc.{seq}"));
        }
    }

    #[test]
    fn subjects_are_made_once_and_checked() {
        let mut ids = Ids::new("cnlink", &Arc::from("web01.example"), &Arc::from("b"));
        let exec: Arc<str> = Arc::from("exec");
        let a = ids.subject(&exec).unwrap();
        let b = ids.subject(&Arc::from("exec")).unwrap();
        assert_eq!(a.as_str(), "cnlink.web01_example.proc.exec");
        assert_eq!(a, b);
        assert_eq!(ids.subjects.len(), 1);
        let mut bad = Ids::new("bad prefix", &Arc::from("h"), &Arc::from("b"));
        assert!(bad.subject(&exec).unwrap_err().contains("not a valid NATS subject"));
        let mut dots = Ids::new("a..b", &Arc::from("h"), &Arc::from("b"));
        assert!(dots.subject(&exec).is_err());
    }
}
