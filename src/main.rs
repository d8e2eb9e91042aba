//! The `cnlink` command: a lossless process-event monitor and tools for the Linux kernel connector.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Linux kernel connector tools.
#[derive(Debug, Parser)]
#[command(name = "cnlink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The connector core in userspace (daemon, list, echo, test).
    Bus(cmd::bus::BusArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bus(args) => cmd::bus::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cnlink: {e:#}");
            ExitCode::from(2)
        }
    }
}
