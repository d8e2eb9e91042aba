//! What a [`super::Subscriber`] asks of its driver and tells it: requests to send, states, events.

use std::time::Duration;

use crate::engine::proc_stream::ProcItem;
use crate::wire::ProcInput;

use super::REQUEST_MAX;

/// Which of the driver's sockets a datagram came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// The subscribed socket.
    Main,
    /// The probe: joined to the proc group without a request of its own, so it sees every ack, including the
    /// one a filtered main socket never gets.
    Probe,
}

/// A request to send to the kernel (port 0).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The socket to send it from.
    pub path: Path,
    /// The CPU to send it from (the kernel answers on the sending CPU), or `None` for any.
    pub cpu: Option<u32>,
    /// What it asks.
    pub request: ProcInput,
    pub(super) buf: [u8; REQUEST_MAX],
    pub(super) len: u8,
}

impl Transmit {
    /// The whole datagram (`nlmsghdr`, `cn_msg`, the request data).
    pub fn datagram(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transmit")
            .field("path", &self.path)
            .field("cpu", &self.cpu)
            .field("request", &self.request)
            .finish()
    }
}

/// Why a subscription did not come about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The kernel answered with this (positive) errno: `EPERM` before 6.6 without `CAP_NET_ADMIN`, say.
    Refused(u32),
    /// No ack came: the process is outside the initial user or pid namespace (the kernel ignores it), or the
    /// kernel has no proc connector.
    NoAck {
        /// How long the subscription waited in all.
        waited: Duration,
    },
}

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the kernel's ack.
    Subscribing,
    /// Acked: events flow.
    Subscribed {
        /// Whether the kernel filters (6.6+ with a strict subset of events).
        kernel_filtered: bool,
    },
    /// It did not come about (close it to undo what the kernel may have counted).
    Failed(Failure),
    /// [`super::Subscriber::close`] was called.
    Closed,
}

/// What [`super::Subscriber::poll_event`] yields: stream items and the subscription's own changes of state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// An item of the stream.
    Item(ProcItem),
    /// The kernel acked the subscription.
    Subscribed {
        /// Whether the kernel filters.
        kernel_filtered: bool,
    },
    /// The subscription failed.
    Failed(Failure),
}
