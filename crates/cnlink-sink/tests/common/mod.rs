//! The sink tests' helpers: real `nats-server` processes (from `cnlink-testnats`, shared with the CLI's tests
//! and the benchmark) and a collector that checks every message it takes.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cnlink_sink::collect::{self, CollectConfig, CollectStats, CollectedKind};
use cnlink_sink::publish::ConnectConfig;
use cnlink_sink::{Auditor, LedgerRecord};
pub use cnlink_testnats::{cluster, free_port, server_binary, signal_pid, NatsServer, TempDir};

/// What a collection found.
#[derive(Debug, Default)]
pub struct Collection {
    /// (stream seq, sink seq, the event's "n") per event, in stream order.
    pub events: Vec<(u64, u64, u64)>,
    pub ledgers: Vec<LedgerRecord>,
    pub stats: CollectStats,
    pub auditor: Auditor,
}

/// Collects the whole stream (until idle for 1 s with nothing pending; bounded by `limit`).
pub fn collect_all(servers: &str, stream: &str, limit: Duration) -> Collection {
    let connect = ConnectConfig::parse(servers).unwrap();
    let mut config = CollectConfig::new(connect);
    config.stream = stream.into();
    config.durable = Some(format!("test-{}", free_port()));
    config.idle_exit = Some(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut found = Collection::default();
    let stats = collect::collect(&config, &stop, |message| -> Result<(), String> {
        match &message.kind {
            CollectedKind::Event(_) => {
                let id = format!("{}:{}:{}", message.host_id, message.boot_id, message.sink_seq);
                let has = |name: &str, value: &str| message.headers.iter().any(|(n, v)| n == name && v == value);
                let subject = format!("cnlink.{}.proc.exec", cnlink_sink::subject_token(&message.host_id));
                if message.subject != subject {
                    return Err(format!("subject {} of {id}, expected {subject}", message.subject));
                }
                if !has("Nats-Msg-Id", &id) || message.headers.len() != 1 {
                    return Err(format!("headers of {id}: {:?}", message.headers));
                }
                let value: serde_json::Value = serde_json::from_slice(message.payload).map_err(|e| e.to_string())?;
                let n = value["n"].as_u64().unwrap_or(u64::MAX);
                found.events.push((message.stream_seq, message.sink_seq, n));
                found.auditor.event(&message.host_id, &message.boot_id, message.sink_seq);
            }
            CollectedKind::Ledger(ledger) => {
                let schema = message.headers.iter().any(|(n, v)| n == "Cnlink-Schema" && v == "cnlink-ledger/1");
                if !schema || message.headers.len() != 2 {
                    return Err(format!("headers of ledger {}: {:?}", message.sink_seq, message.headers));
                }
                found.auditor.ledger(ledger);
                found.ledgers.push(ledger.clone());
            }
        }
        Ok(())
    });
    let timed_out = stop.swap(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    found.stats = stats.expect("collect");
    assert!(!timed_out, "collection still running after {limit:?}");
    for _ in 0..found.stats.malformed {
        found.auditor.malformed();
    }
    found
}
