//! [`Sink`]: the event side of the spool, with the ledger.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::event::{object_rest, payload_prefix, subject_token, EventError, MAX_TOKEN_LEN};
use crate::ledger::{LedgerRecord, UpstreamCounts, LEDGER_TOKEN};
use crate::spool::record::RecordKind;
use crate::spool::{self, Identity, Recovery, SpoolError, SpoolHandle, SpoolOptions, SpoolStats, SpoolWriter};

/// What a [`Sink`] needs.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The host and boot of the events.
    pub identity: Identity,
    /// The spool's directory and bounds.
    pub spool: SpoolOptions,
    /// How often [`Sink::ledger_due`] asks for a ledger record (default 5 s).
    pub ledger_interval: Duration,
}

impl SinkConfig {
    /// A configuration with the default spool bounds and ledger interval.
    pub fn new(identity: Identity, spool_dir: impl Into<std::path::PathBuf>) -> Self {
        SinkConfig { identity, spool: SpoolOptions::new(spool_dir), ledger_interval: Duration::from_secs(5) }
    }
}

/// The writer side of the sink: events and ledger records into the spool. Used from one thread (the monitor's
/// writer); it never waits for the network.
///
/// ```no_run
/// use cnlink_sink::{Identity, Sink, SinkConfig, UpstreamCounts};
/// use std::time::Instant;
///
/// let identity = Identity { host_id: "web01".into(), boot_id: "6c1e".into() };
/// let (mut sink, _recovery) = Sink::open(SinkConfig::new(identity, "/var/spool/cnlink")).unwrap();
/// sink.submit("exec", br#"{"event":"exec","pid":42}"#).unwrap();
/// sink.flush().ok(); // errors (a full disk) are counted and reported, never fatal
/// if sink.ledger_due(Instant::now()) {
///     sink.write_ledger(Instant::now(), &UpstreamCounts::default(), false).ok();
/// }
/// ```
pub struct Sink {
    writer: SpoolWriter,
    prefix: Vec<u8>,
    ledger_interval: Duration,
    next_ledger: Option<Instant>,
}

impl Sink {
    /// Opens the spool (recovering it) and returns the sink and what recovery found.
    pub fn open(config: SinkConfig) -> Result<(Sink, Recovery), SpoolError> {
        let (writer, _, recovery) = spool::open(&config.spool, config.identity.clone())?;
        let sink = Sink {
            prefix: payload_prefix(&config.identity.host_id, &config.identity.boot_id),
            writer,
            ledger_interval: config.ledger_interval,
            next_ledger: None,
        };
        Ok((sink, recovery))
    }

    /// The handle a publisher uses on this sink's spool.
    pub fn handle(&self) -> SpoolHandle {
        self.writer.handle()
    }

    /// The host and boot of the events.
    pub fn identity(&self) -> &Identity {
        self.writer.identity()
    }

    /// Stores one event: `kind` names the subject's last token (made safe by [`subject_token`]), `json` is
    /// the event as a JSON object, to which `host_id`, `boot_id` and `sink_seq` are added in front. Returns
    /// the event's sink sequence number.
    pub fn submit(&mut self, kind: &str, json: &[u8]) -> Result<u64, EventError> {
        if kind.is_empty() || kind.len() > MAX_TOKEN_LEN {
            return Err(EventError::BadKind);
        }
        let (separator, rest) = object_rest(json)?;
        let token = subject_token(kind);
        self.append(RecordKind::Event, &token, separator, rest).map_err(|e| EventError::TooLarge(e.to_string()))
    }

    fn append(
        &mut self,
        kind: RecordKind,
        token: &str,
        separator: &[u8],
        rest: &[u8],
    ) -> Result<u64, spool::AppendError> {
        // 20 digits for the number, 18 bytes of record framing.
        self.writer.make_room(self.prefix.len() + 20 + separator.len() + rest.len() + token.len() + 18);
        let mut seq_text = itoa::Buffer::new();
        let seq_text = seq_text.format(self.writer.next_seq());
        let parts: [&[u8]; 4] = [&self.prefix, seq_text.as_bytes(), separator, rest];
        self.writer.append(kind, token, &parts)
    }

    /// Writes the buffered records to the spool (see [`SpoolWriter::flush`]); call it when the event source
    /// has nothing more for now. An error is counted in the ledger and the sink goes on.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        self.writer.flush()
    }

    /// True when a ledger record is due (the first call starts the clock).
    pub fn ledger_due(&mut self, now: Instant) -> bool {
        match self.next_ledger {
            Some(at) => now >= at,
            None => {
                self.next_ledger = Some(now + self.ledger_interval);
                false
            }
        }
    }

    /// Appends a ledger record with the upstream counts and the spool's, flushes, and returns its sequence
    /// number. `is_final` marks the record written at exit.
    pub fn write_ledger(&mut self, now: Instant, upstream: &UpstreamCounts, is_final: bool) -> Result<u64, SpoolError> {
        self.next_ledger = Some(now + self.ledger_interval);
        // Build, make room, and build again if a failed flush gave numbers back.
        let (seq, json) = loop {
            let seq = self.writer.next_seq();
            let json = self.ledger_json(seq, upstream, is_final)?;
            self.writer.make_room(json.len() + 18 + LEDGER_TOKEN.len());
            if self.writer.next_seq() == seq {
                break (seq, json);
            }
        };
        self.writer
            .append(RecordKind::Ledger, LEDGER_TOKEN, &[&json])
            .map_err(|e| SpoolError::Invalid(e.to_string()))?;
        self.flush().map(|()| seq)
    }

    fn ledger_json(&self, seq: u64, upstream: &UpstreamCounts, is_final: bool) -> Result<Vec<u8>, SpoolError> {
        let stats = self.writer.handle().stats();
        let state = &stats.state;
        let identity = self.writer.identity();
        let record = LedgerRecord {
            host_id: identity.host_id.clone(),
            boot_id: identity.boot_id.clone(),
            sink_seq: seq,
            kind: LEDGER_TOKEN.into(),
            is_final,
            time_unix_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            first_seq: state.boot_first_seq,
            last_seq: seq,
            kernel_lost: upstream.kernel_lost_per_cpu.iter().sum::<u64>() + upstream.kernel_lost_other,
            kernel_lost_per_cpu: upstream.kernel_lost_per_cpu.clone(),
            queue_lost: upstream.queue_lost,
            filtered: upstream.filtered,
            spool_evicted: state.evicted,
            spool_evicted_unconfirmed: state.evicted_unconfirmed,
            spool_evicted_other_boot: state.evicted_other_boot,
            spool_torn: state.torn,
            write_dropped: state.write_dropped,
            published: state.published,
            acked: state.acked,
            acked_through: state.acked_seq.max(state.evicted_through),
        };
        serde_json::to_vec(&record).map_err(|e| SpoolError::Invalid(e.to_string()))
    }

    /// The spool's counters.
    pub fn stats(&self) -> SpoolStats {
        self.writer.handle().stats()
    }
}
