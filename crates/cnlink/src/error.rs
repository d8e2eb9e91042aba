//! The library's error type.

use std::io;
use std::time::Duration;

use crate::wire::WireError;

/// Why a connector operation failed, including why nothing can arrive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no `NETLINK_CONNECTOR` (`CONFIG_CONNECTOR` is off).
    #[error("this kernel has no connector (NETLINK_CONNECTOR is not supported)")]
    NoConnector,
    /// The kernel refused an operation for lack of privilege.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The process is outside the namespace the connector serves.
    #[error("outside the initial {0} namespace: the kernel connector does not serve this process")]
    ForeignNamespace(&'static str),
    /// A subscription got no ack in time.
    #[error("no subscription ack within {timeout:?}: {likely}")]
    NoAck {
        /// How long we waited.
        timeout: Duration,
        /// The most likely cause, from what could be checked.
        likely: &'static str,
    },
    /// A subscription was asked for no event: an event mask with no known kind, which the kernel would read as
    /// "all".
    #[error("the event mask selects no event")]
    NoEvents,
    /// The kernel answered a subscription with an error (a positive errno).
    #[error("the kernel refused the subscription: {}", io::Error::from_raw_os_error(*.0 as i32))]
    Refused(u32),
    /// No reply arrived before the deadline.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The peer's port answered as a user the client does not trust ([`crate::Trust::PeerWithUids`]): another
    /// process holds that port, so the request was abandoned.
    #[error(
        "port {port:#x} answered as {}, which this client does not trust (is the real peer down?)",
        who(*uid, *pid)
    )]
    UntrustedPeer {
        /// The peer's port.
        port: u32,
        /// The uid that answered (`None`: the datagram carried no credentials).
        uid: Option<u32>,
        /// Its process id.
        pid: Option<i32>,
    },
    /// Bytes that do not decode.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// Any other system error, unchanged.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn who(uid: Option<u32>, pid: Option<i32>) -> String {
    match (uid, pid) {
        (Some(uid), Some(pid)) => format!("uid {uid} (pid {pid})"),
        _ => "a sender without credentials".into(),
    }
}
