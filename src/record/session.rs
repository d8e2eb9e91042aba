//! The session record: what made a recording, with which settings, so that a replay runs the same way.
//!
//! Encoding [`SESSION_JSON`]: this struct as JSON. Fields only ever get added (with defaults), so older
//! recordings keep reading.

use cnlink_capture::Record;
use serde::{Deserialize, Serialize};

/// The encoding number of [`Session`] in a session record: JSON.
pub(crate) const SESSION_JSON: u32 = 1;

/// What made a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// `listen`, `record` or `proc`.
    pub(crate) command: String,
    /// cnlink's version.
    pub(crate) version: String,
    /// The command line after the program name, for people reading the file.
    #[serde(default)]
    pub(crate) args: Vec<String>,
    /// The recording process's pid (its own events are not shown).
    #[serde(default)]
    pub(crate) pid: i32,
    /// `listen`: the groups joined.
    #[serde(default)]
    pub(crate) groups: Vec<u32>,
    /// The process monitor's settings, for `record` and `proc`.
    #[serde(default)]
    pub(crate) monitor: Option<MonitorSession>,
}

/// The process monitor's settings that replay needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MonitorSession {
    /// The events subscribed to (`EventMask` bits).
    pub(crate) kernel_mask: u32,
    /// Whether the kernel filtered the events (losses were then counted from the socket's drop counter).
    pub(crate) kernel_filtered: bool,
    /// Whether `/proc` was read (the recording then holds every answer the monitor used).
    pub(crate) enrich: bool,
    /// The host the entity ids derive from: machine id.
    pub(crate) host_id: String,
    /// The host the entity ids derive from: boot id.
    pub(crate) boot_id: String,
}

impl Session {
    /// A session of `command`, by this process, with this process's command line.
    pub(crate) fn new(command: &str) -> Session {
        Session {
            command: command.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            args: std::env::args().skip(1).collect(),
            pid: std::process::id() as i32,
            ..Session::default()
        }
    }

    /// The session as a record dated `timestamp_ns`.
    pub(crate) fn record(&self, timestamp_ns: u64) -> Record {
        // Plain data with string keys: serializing cannot fail.
        let data = serde_json::to_vec(self).unwrap_or_default();
        Record::Session(cnlink_capture::Session { encoding: SESSION_JSON, timestamp_ns, data })
    }

    /// Decodes a session record's data.
    pub(crate) fn decode(r: &cnlink_capture::Session) -> anyhow::Result<Session> {
        match r.encoding {
            SESSION_JSON => serde_json::from_slice(&r.data).map_err(|e| anyhow::anyhow!("bad session record: {e}")),
            e => anyhow::bail!("unknown session encoding {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_older_sessions() {
        let s = Session {
            groups: vec![1],
            monitor: Some(MonitorSession { kernel_mask: 3, enrich: true, ..Default::default() }),
            ..Session::new("listen")
        };
        let Record::Session(r) = s.record(7) else { panic!() };
        assert_eq!((r.encoding, r.timestamp_ns), (SESSION_JSON, 7));
        assert_eq!(Session::decode(&r).unwrap(), s);
        let old = cnlink_capture::Session {
            encoding: 1,
            timestamp_ns: 0,
            data: br#"{"command":"x","version":"0"}"#.to_vec(),
        };
        assert_eq!(Session::decode(&old).unwrap().command, "x");
        assert!(Session::decode(&cnlink_capture::Session { encoding: 9, ..old }).is_err());
    }
}
