//! The session record: what made a recording, with which settings, so that a replay runs the same way.
//!
//! Encoding [`SESSION_JSON`]: [`Session`] as JSON. Fields only ever get added (with defaults), so older
//! recordings keep reading.

use cnlink_capture::Record;
use serde::{Deserialize, Serialize};

/// The encoding number of [`Session`] in a session record: JSON.
pub const SESSION_JSON: u32 = 1;

/// What made a recording.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `listen`, `record` or `proc`.
    pub command: String,
    /// cnlink's version.
    pub version: String,
    /// The command line after the program name, for people reading the file.
    #[serde(default)]
    pub args: Vec<String>,
    /// The recording process's pid (its own events are not shown).
    #[serde(default)]
    pub pid: i32,
    /// `listen`: the groups joined.
    #[serde(default)]
    pub groups: Vec<u32>,
    /// The process monitor's settings, for `record` and `proc`.
    #[serde(default)]
    pub monitor: Option<MonitorSession>,
}

/// The process monitor's settings that replay needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorSession {
    /// The events subscribed to (`EventMask` bits).
    pub kernel_mask: u32,
    /// Whether the kernel filtered the events (losses were then counted from the socket's drop counter).
    pub kernel_filtered: bool,
    /// Whether `/proc` was read (the recording then holds every answer the monitor used).
    pub enrich: bool,
    /// The host the entity ids derive from: machine id.
    pub host_id: String,
    /// The host the entity ids derive from: boot id.
    pub boot_id: String,
}

/// A session record whose data is not a [`Session`] of a known encoding.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// An encoding this version does not know.
    #[error("unknown session encoding {0}")]
    Encoding(u32),
    /// The data does not decode.
    #[error("bad session record: {0}")]
    Bad(#[from] serde_json::Error),
}

impl Session {
    /// A session of `command` (`listen`, `record`, `proc`) by this process, with its command line.
    pub fn new(command: &str) -> Session {
        Session {
            command: command.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            args: std::env::args().skip(1).collect(),
            pid: std::process::id() as i32,
            ..Session::default()
        }
    }

    /// The session as a record dated `timestamp_ns`.
    pub fn record(&self, timestamp_ns: u64) -> Record {
        // Plain data with string keys: serializing cannot fail.
        let data = serde_json::to_vec(self).unwrap_or_default();
        Record::Session(cnlink_capture::Session { encoding: SESSION_JSON, timestamp_ns, data })
    }

    /// Decodes a session record's data.
    pub fn decode(r: &cnlink_capture::Session) -> Result<Session, SessionError> {
        match r.encoding {
            SESSION_JSON => Ok(serde_json::from_slice(&r.data)?),
            e => Err(SessionError::Encoding(e)),
        }
    }

    /// The host identity the recorded monitor derived entity ids from.
    pub fn host(&self) -> Option<crate::HostIdentity> {
        self.monitor.as_ref().map(|m| crate::HostIdentity::new(&m.host_id, &m.boot_id))
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
