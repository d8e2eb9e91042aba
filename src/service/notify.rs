//! The systemd readiness protocol (`sd_notify`): `READY=1`, `WATCHDOG=1`, `STATUS=...`, `STOPPING=1`.
//!
//! Everything is a no-op when `NOTIFY_SOCKET` is unset (not started by systemd, or not `Type=notify`). When the
//! socket is set but cannot be reached (missing, refused), the first failure is reported once on stderr and the
//! notifier turns itself off: the daemon keeps running, as systemd's own tools do.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Talks to the service manager, if there is one.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// `NOTIFY_SOCKET` was set and no send has failed yet.
    enabled: bool,
    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when the watchdog is on for this process.
    watchdog_every: Option<Duration>,
    last_watchdog: Option<Instant>,
    /// The last `STATUS=` sent, to send only changes.
    last_status: String,
}

impl Notifier {
    /// A notifier for this process's environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID`).
    pub(crate) fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        let watchdog_every = sd_notify::watchdog_enabled().filter(|d| enabled && !d.is_zero()).map(|d| d / 2);
        Notifier { enabled, watchdog_every, last_watchdog: None, last_status: String::new() }
    }

    /// Whether notifications are sent at all.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// `READY=1`: the service is up (the subscription is acknowledged, the socket is bound).
    pub(crate) fn ready(&mut self) {
        self.send(&[NotifyState::Ready]);
    }

    /// `WATCHDOG=1`, sent when half the watchdog interval has passed since the last one (call it from the main
    /// loop as often as you like).
    pub(crate) fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.watchdog_every else { return };
        if self.last_watchdog.is_some_and(|t| now.saturating_duration_since(t) < every) {
            return;
        }
        self.last_watchdog = Some(now);
        self.send(&[NotifyState::Watchdog]);
    }

    /// `STATUS=...`: one line for `systemctl status`; sent only when it changed.
    pub(crate) fn status(&mut self, status: &str) {
        if !self.enabled || status == self.last_status {
            return;
        }
        self.last_status.clear();
        self.last_status.push_str(status);
        self.send(&[NotifyState::Status(status)]);
    }

    /// `STOPPING=1`: the service is shutting down.
    pub(crate) fn stopping(&mut self) {
        self.send(&[NotifyState::Stopping]);
    }

    fn send(&mut self, state: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            let path = std::env::var_os("NOTIFY_SOCKET").unwrap_or_default();
            eprintln!("cnlink: NOTIFY_SOCKET={}: {e}; not notifying the service manager", path.to_string_lossy());
            self.enabled = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_socket_nothing_is_sent_and_nothing_fails() {
        let mut n = Notifier { enabled: false, watchdog_every: None, last_watchdog: None, last_status: String::new() };
        n.ready();
        n.watchdog(Instant::now());
        n.status("events 1");
        n.stopping();
        assert!(!n.enabled());
        assert_eq!(n.last_status, "", "no status is remembered while disabled");
    }

    #[test]
    fn the_watchdog_is_sent_at_half_its_interval() {
        let every = Duration::from_secs(5);
        // Enabled on paper, but the socket path does not exist: the first send fails and turns it off.
        let mut n =
            Notifier { enabled: false, watchdog_every: Some(every), last_watchdog: None, last_status: String::new() };
        let t0 = Instant::now();
        n.watchdog(t0);
        assert_eq!(n.last_watchdog, Some(t0));
        n.watchdog(t0 + Duration::from_secs(1));
        assert_eq!(n.last_watchdog, Some(t0), "too early for another");
        n.watchdog(t0 + every);
        assert_eq!(n.last_watchdog, Some(t0 + every));
    }
}
