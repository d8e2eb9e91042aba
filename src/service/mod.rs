//! What makes a daemon a good citizen of a Linux host: systemd's readiness protocol ([`notify`]), Prometheus
//! metrics ([`metrics`]) served over HTTP ([`http`]), both driven from a daemon's main loop ([`daemon`]) with
//! what each daemon reports ([`reports`]), and the options every daemon shares ([`ServiceArgs`]).

pub(crate) mod daemon;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod reports;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of every daemon: a configuration file and a metrics endpoint.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServiceArgs {
    /// Read options from this TOML file (see docs/config.md); options on the command line win.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the options in effect (command line, file, defaults) as TOML, and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) metrics: Option<SocketAddr>,
}
