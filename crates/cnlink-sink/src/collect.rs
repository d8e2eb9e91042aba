//! The collector: a durable pull consumer on the stream that hands each message to a callback and
//! acknowledges it once the callback returns. Messages that are not cnlink records are counted as malformed,
//! acknowledged and skipped, never fatal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::ledger::{LedgerRecord, LEDGER_TOKEN};
use crate::publish::ConnectConfig;

/// What to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectConfig {
    /// Where and how to connect.
    pub connect: ConnectConfig,
    /// The stream (default `CNLINK`).
    pub stream: String,
    /// The durable consumer's name (default `cnlink-collect`): a second run resumes after the last message the
    /// first acknowledged. `None`: a consumer of this run only, from the stream's first message (the server
    /// removes it a minute after the run; a reconnect resumes after the last message handled).
    pub durable: Option<String>,
    /// Only subjects matching this (default: the whole stream).
    pub filter_subject: Option<String>,
    /// Messages fetched per request (default 500).
    pub batch: usize,
    /// Return once no message came for this long and none is pending (default: run until stopped).
    pub idle_exit: Option<Duration>,
    /// How long failures are retried after the last progress before giving up (default 30 s).
    pub retry_for: Duration,
}

impl CollectConfig {
    /// The defaults for these servers.
    pub fn new(connect: ConnectConfig) -> Self {
        CollectConfig {
            connect,
            stream: "CNLINK".into(),
            durable: Some("cnlink-collect".into()),
            filter_subject: None,
            batch: 500,
            idle_exit: None,
            retry_for: Duration::from_secs(30),
        }
    }
}

/// What a message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectedKind {
    /// A process event; the subject's last token.
    Event(String),
    /// A ledger record.
    Ledger(LedgerRecord),
}

/// One well-formed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected<'a> {
    /// The message's sequence number in the stream.
    pub stream_seq: u64,
    /// Its subject.
    pub subject: &'a str,
    /// The payload's `host_id`.
    pub host_id: String,
    /// The payload's `boot_id`.
    pub boot_id: String,
    /// The payload's `sink_seq`.
    pub sink_seq: u64,
    /// Event or ledger.
    pub kind: CollectedKind,
    /// The JSON payload as published.
    pub payload: &'a [u8],
    /// The message's headers (`Nats-Msg-Id`, and `Cnlink-Schema` on ledger records), sorted by name.
    pub headers: Vec<(String, String)>,
}

/// Counters of a collection run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectStats {
    /// Messages received.
    pub received: u64,
    /// Events handed to the callback.
    pub events: u64,
    /// Ledger records handed to the callback.
    pub ledgers: u64,
    /// Messages that were not cnlink records (acknowledged and skipped).
    pub malformed: u64,
    /// Why the last malformed message was.
    pub last_malformed: Option<String>,
    /// The stream sequence number of the last message handled (0 before the first).
    pub last_stream_seq: u64,
}

/// Why collection stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// No connection, no stream, or the consumer could not be made.
    #[error("collect: {0}")]
    Setup(String),
    /// Fetching or acknowledging failed.
    #[error("collect: {0}")]
    Consume(String),
    /// The callback failed (the message is not acknowledged and comes again on the next run).
    #[error("collect: the consumer callback failed: {0}")]
    Callback(String),
}

#[derive(Deserialize)]
struct Ids {
    host_id: String,
    boot_id: String,
    sink_seq: u64,
}

/// Reads a message's cnlink fields, or says why it is malformed.
pub fn parse_message<'a>(stream_seq: u64, subject: &'a str, payload: &'a [u8]) -> Result<Collected<'a>, String> {
    let token = subject.rsplit('.').next().unwrap_or("");
    let (ids, kind) = if token == LEDGER_TOKEN {
        let ledger = LedgerRecord::parse(payload).map_err(|e| format!("ledger on {subject}: {e}"))?;
        let ids = Ids { host_id: ledger.host_id.clone(), boot_id: ledger.boot_id.clone(), sink_seq: ledger.sink_seq };
        (ids, CollectedKind::Ledger(ledger))
    } else {
        let ids: Ids = serde_json::from_slice(payload).map_err(|e| format!("event on {subject}: {e}"))?;
        (ids, CollectedKind::Event(token.to_owned()))
    };
    Ok(Collected {
        stream_seq,
        subject,
        host_id: ids.host_id,
        boot_id: ids.boot_id,
        sink_seq: ids.sink_seq,
        kind,
        payload,
        headers: Vec::new(),
    })
}

/// What the collector hands to [`collect_all`]'s callback, message by message, in stream order.
#[derive(Debug, Clone, Copy)]
pub enum Delivery<'a> {
    /// A well-formed event or ledger record.
    Record(&'a Collected<'a>),
    /// A message that is not a cnlink record (it is acknowledged and skipped after the callback).
    Malformed {
        /// Its sequence number in the stream.
        stream_seq: u64,
        /// Its subject.
        subject: &'a str,
        /// Why it is malformed.
        why: &'a str,
    },
    /// A fetched batch was handed over: a moment to flush.
    BatchEnd,
    /// A failure (no connection, no stream yet, a cluster electing a leader) that is retried; collection
    /// gives up after [`CollectConfig::retry_for`] without progress.
    Retrying(&'a CollectError),
}

/// Consumes the stream through the durable consumer, calling `on_message` for each well-formed message in
/// stream order and acknowledging it after; returns when `stop` is set, or when idle (see
/// [`CollectConfig::idle_exit`]). Blocking: it runs its own current-thread runtime. A lost connection or a
/// cluster that is electing a leader is retried (every 250 ms) for [`CollectConfig::retry_for`] after the
/// last progress; a failing callback stops at once. Malformed messages are counted and skipped; see
/// [`collect_all`] to see them too.
pub fn collect<E: std::fmt::Display>(
    config: &CollectConfig,
    stop: &AtomicBool,
    mut on_message: impl FnMut(&Collected<'_>) -> Result<(), E>,
) -> Result<CollectStats, CollectError> {
    collect_all(config, stop, |delivery| match delivery {
        Delivery::Record(collected) => on_message(collected),
        Delivery::Malformed { .. } | Delivery::BatchEnd | Delivery::Retrying(_) => Ok(()),
    })
}

/// As [`collect`], with the malformed messages handed to the callback as well (before they are acknowledged).
pub fn collect_all<E: std::fmt::Display>(
    config: &CollectConfig,
    stop: &AtomicBool,
    mut on_message: impl FnMut(Delivery<'_>) -> Result<(), E>,
) -> Result<CollectStats, CollectError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CollectError::Setup(format!("runtime: {e}")))?;
    runtime.block_on(async {
        let mut stats = CollectStats::default();
        let mut last_progress = Instant::now();
        loop {
            let received = stats.received;
            let outcome = session(config, stop, &mut on_message, &mut stats).await;
            if stats.received > received {
                last_progress = Instant::now();
            }
            match outcome {
                Ok(()) => return Ok(stats),
                Err(error @ CollectError::Callback(_)) => return Err(error),
                Err(error) if last_progress.elapsed() >= config.retry_for => return Err(error),
                Err(_) if stop.load(Ordering::SeqCst) => return Ok(stats),
                Err(error) => {
                    on_message(Delivery::Retrying(&error)).map_err(|e| CollectError::Callback(e.to_string()))?;
                    tokio::time::sleep(Duration::from_millis(250)).await
                }
            }
        }
    })
}

/// How long a fetch may go without a message or its end before the server is taken for gone.
const FETCH_ANSWER: Duration = Duration::from_secs(5);

async fn session<E: std::fmt::Display>(
    config: &CollectConfig,
    stop: &AtomicBool,
    on_message: &mut impl FnMut(Delivery<'_>) -> Result<(), E>,
    stats: &mut CollectStats,
) -> Result<(), CollectError> {
    let client = config.connect.connect().await.map_err(CollectError::Setup)?;
    let js = jetstream::new(client.clone());
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| CollectError::Setup(format!("stream {}: {e}", config.stream)))?;
    let mut consumer_config = consumer::pull::Config {
        durable_name: config.durable.clone(),
        ack_policy: consumer::AckPolicy::Explicit,
        filter_subject: config.filter_subject.clone().unwrap_or_default(),
        ..Default::default()
    };
    let consumer: consumer::PullConsumer = match &config.durable {
        Some(durable) => stream
            .get_or_create_consumer(durable, consumer_config)
            .await
            .map_err(|e| CollectError::Setup(format!("consumer {durable}: {e}")))?,
        None => {
            consumer_config.inactive_threshold = Duration::from_secs(60);
            if stats.last_stream_seq > 0 {
                consumer_config.deliver_policy =
                    consumer::DeliverPolicy::ByStartSequence { start_sequence: stats.last_stream_seq + 1 };
            }
            stream.create_consumer(consumer_config).await.map_err(|e| CollectError::Setup(format!("consumer: {e}")))?
        }
    };
    let mut last_message = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut batch = consumer
            .fetch()
            .max_messages(config.batch.max(1))
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| CollectError::Consume(format!("fetch: {e}")))?;
        let mut got = 0;
        // The server ends each fetch within its expiry; a server gone quiet (killed, partitioned) ends nothing, and
        // the client would wait for it forever.
        while let Some(message) = tokio::time::timeout(FETCH_ANSWER, batch.next())
            .await
            .map_err(|_| CollectError::Consume(format!("fetch: no answer from the server within {FETCH_ANSWER:?}")))?
        {
            let message = message.map_err(|e| CollectError::Consume(format!("fetch: {e}")))?;
            got += 1;
            stats.received += 1;
            let stream_seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            match parse_message(stream_seq, message.subject.as_str(), &message.payload) {
                Ok(mut collected) => {
                    if let Some(headers) = &message.headers {
                        collected.headers = headers
                            .iter()
                            .flat_map(|(name, values)| {
                                values.iter().map(move |v| (name.to_string(), v.as_str().to_owned()))
                            })
                            .collect();
                        collected.headers.sort();
                    }
                    on_message(Delivery::Record(&collected)).map_err(|e| CollectError::Callback(e.to_string()))?;
                    match collected.kind {
                        CollectedKind::Event(_) => stats.events += 1,
                        CollectedKind::Ledger(_) => stats.ledgers += 1,
                    }
                }
                Err(why) => {
                    let subject = message.subject.as_str();
                    on_message(Delivery::Malformed { stream_seq, subject, why: &why })
                        .map_err(|e| CollectError::Callback(e.to_string()))?;
                    stats.malformed += 1;
                    stats.last_malformed = Some(why);
                }
            }
            // Handled: a consumer of this run only resumes after it, even if the ack is lost.
            stats.last_stream_seq = stats.last_stream_seq.max(stream_seq);
            message.ack().await.map_err(|e| CollectError::Consume(format!("ack: {e}")))?;
        }
        if got > 0 {
            on_message(Delivery::BatchEnd).map_err(|e| CollectError::Callback(e.to_string()))?;
            last_message = Instant::now();
            continue;
        }
        if let Some(idle) = config.idle_exit {
            if last_message.elapsed() >= idle {
                let mut consumer = consumer.clone();
                let pending = consumer
                    .info()
                    .await
                    .map_err(|e| CollectError::Consume(format!("consumer info: {e}")))?
                    .num_pending;
                if pending == 0 {
                    break;
                }
            }
        }
    }
    client.flush().await.map_err(|e| CollectError::Consume(format!("flush: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_ledgers_parse_and_junk_is_malformed() {
        let event = br#"{"host_id":"h","boot_id":"b","sink_seq":3,"event":"exec"}"#;
        let collected = parse_message(9, "cnlink.h.proc.exec", event).unwrap();
        assert_eq!((collected.sink_seq, collected.kind), (3, CollectedKind::Event("exec".into())));
        let ledger = serde_json::to_vec(&LedgerRecord {
            host_id: "h".into(),
            boot_id: "b".into(),
            sink_seq: 4,
            ..Default::default()
        })
        .unwrap();
        let collected = parse_message(10, "cnlink.h.proc.ledger", &ledger).unwrap();
        assert!(matches!(collected.kind, CollectedKind::Ledger(ref l) if l.sink_seq == 4));
        for junk in [&b"not json"[..], b"{}", br#"{"host_id":"h"}"#, b"[1,2]"] {
            assert!(parse_message(1, "cnlink.h.proc.exec", junk).is_err());
            assert!(parse_message(1, "cnlink.h.proc.ledger", junk).is_err());
        }
    }
}
