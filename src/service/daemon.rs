//! The service side of a daemon's main loop: the metrics endpoint, readiness, the watchdog, and a periodic
//! report (the `STATUS=` line and the metrics).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::http::MetricsServer;
use super::metrics::Metrics;
use super::notify::Notifier;

/// How often the status line and the metrics are refreshed.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Notifications and metrics of one daemon.
#[derive(Debug)]
pub(crate) struct Daemon {
    notifier: Notifier,
    server: Option<MetricsServer>,
    last_report: Option<Instant>,
    /// A part added to every status line (a sink's state), after `; `.
    status_extra: String,
}

impl Daemon {
    /// Starts the metrics endpoint at `metrics` (when given) serving what `register` adds, and reads the
    /// service manager's environment. Fails when the endpoint cannot listen, before the daemon starts work.
    pub(crate) fn start<M>(
        metrics: Option<SocketAddr>,
        register: impl FnOnce(&mut Metrics) -> M,
    ) -> anyhow::Result<(Daemon, Option<M>)> {
        let (server, handles) = match metrics {
            Some(addr) => {
                let mut m = Metrics::new();
                let handles = register(&mut m);
                let server = MetricsServer::start(addr, m.into_registry())?;
                eprintln!("cnlink: metrics at http://{}/metrics", server.addr());
                (Some(server), Some(handles))
            }
            None => (None, None),
        };
        Ok((Daemon { notifier: Notifier::from_env(), server, last_report: None, status_extra: String::new() }, handles))
    }

    /// `READY=1`.
    pub(crate) fn ready(&mut self) {
        self.notifier.ready();
    }

    /// From the main loop: sends `WATCHDOG=1` when due; true when a report is due (every [`REPORT_EVERY`],
    /// and only when someone reads it).
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        self.tick_if(now, true)
    }

    /// As [`Daemon::tick`], for a daemon whose work runs on another thread: `WATCHDOG=1` only while `alive` says
    /// that thread is turning, so that the service manager restarts a daemon whose work is stuck.
    pub(crate) fn tick_if(&mut self, now: Instant, alive: bool) -> bool {
        if alive {
            self.notifier.watchdog(now);
        }
        if !self.notifier.enabled() && self.server.is_none() {
            return false;
        }
        if self.last_report.is_some_and(|t| now.saturating_duration_since(t) < REPORT_EVERY) {
            return false;
        }
        self.last_report = Some(now);
        true
    }

    /// `STATUS=...`, with the extra part when there is one.
    pub(crate) fn status(&mut self, line: &str) {
        if self.status_extra.is_empty() {
            self.notifier.status(line);
        } else {
            self.notifier.status(&format!("{line}; {}", self.status_extra));
        }
    }

    /// A part to add to the status lines from now on (a sink's state: `sink up: ...`).
    pub(crate) fn set_status_extra(&mut self, extra: &str) {
        self.status_extra.clear();
        self.status_extra.push_str(extra);
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&mut self) {
        self.notifier.stopping();
    }
}
