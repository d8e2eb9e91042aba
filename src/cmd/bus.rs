//! `cnlink bus`: owned by the bus work (issue 4); replaced there.

use std::process::ExitCode;

/// Arguments of `cnlink bus`.
#[derive(Debug, clap::Args)]
pub(crate) struct BusArgs {}

/// Runs `cnlink bus`.
pub(crate) fn run(_args: BusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("cnlink bus is not built yet")
}
