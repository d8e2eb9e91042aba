//! What a [`super::Subscriber`] is told when it starts.

use std::time::Duration;

use crate::engine::cpus::CpuSet;
use crate::wire::EventMask;

use super::KernelRelease;

/// What to subscribe to, and what the driver knows about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberConfig {
    /// The events wanted; at least one known kind.
    pub events: EventMask,
    /// Use the 6.6 kernel-side filter when `events` is a strict subset.
    pub kernel_filter: bool,
    /// How long to wait for the ack of the legacy `LISTEN`, and for resync acks.
    pub ack_timeout: Duration,
    /// The `ack` of the first request (random, so that acks to other processes' requests do not match).
    pub initial_ack: u32,
    /// The running kernel's release (`uname -r`), if known.
    pub kernel: Option<KernelRelease>,
    /// The CPUs the driver can send from (its thread's affinity); no resync without it.
    pub affinity: Option<CpuSet>,
    /// The CPUs online; without it, losses are reported as lower bounds.
    pub online: Option<CpuSet>,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        SubscriberConfig {
            events: EventMask::ALL,
            kernel_filter: true,
            ack_timeout: Duration::from_secs(1),
            initial_ack: 0,
            kernel: None,
            affinity: None,
            online: None,
        }
    }
}

/// Why a [`SubscriberConfig`] cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The event mask selects no known event (the kernel would read it as "all").
    #[error("the event mask selects no event")]
    NoEvents,
}
