//! The `cnlink` command: a lossless process-event monitor and tools for the Linux kernel connector.
//!
//! Exit codes: 0 success (also after Ctrl-C, and when the reader of stdout goes away), 1 nothing matched (`send
//! --wait-reply` with no reply, `decode` of bytes that are not a datagram), 2 errors.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

mod cmd;
mod config;
mod monitor;
mod record;
mod service;
mod sink;
mod sys;

/// Linux kernel connector tools.
#[derive(Debug, Parser)]
#[command(name = "cnlink", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch process events (fork, exec, exit, ...) without losing any; forkstat's options and more.
    ///
    /// Shows every event kind by default (forkstat shows fork, exec and exit: `-e fork,exec,exit`). -q implies -S,
    /// as in forkstat.
    Proc(Box<cmd::proc::ProcArgs>),
    /// Collect the events `cnlink proc --sink` published to NATS JetStream; --audit proves nothing was lost
    /// unaccounted for.
    Collect(Box<cmd::collect::CollectArgs>),
    /// Record process events to pcapng: `cnlink proc`'s options, no output.
    Record(Box<cmd::record::RecordCmdArgs>),
    /// Show a recording again, as `cnlink proc` (or `cnlink listen`) showed it live.
    Replay(Box<cmd::replay::ReplayArgs>),
    /// The registered connector ids (/proc/net/connector), with known names.
    List(cmd::list::ListArgs),
    /// Dump any connector traffic of a group or id, decoded where the kind is known.
    Listen(cmd::listen::ListenArgs),
    /// Send one cn_msg to an id, optionally wait for its reply.
    Send(cmd::send::SendArgs),
    /// Decode a datagram given as hex or a binary file, offline.
    Decode(cmd::decode::DecodeArgs),
    /// The connector core in userspace (daemon, list, echo, test).
    Bus(cmd::bus::BusArgs),
    /// Print the man page or a shell completion script.
    Generate(cmd::generate::GenerateArgs),
}

/// The command line, merged with a `--config` file when one is given.
fn parse() -> Result<Cli, ExitCode> {
    match config::parse(Cli::command(), std::env::args_os().collect()) {
        Ok(config::Parsed::Run(m)) => Cli::from_arg_matches(&m).map_err(|e| e.exit()),
        Ok(config::Parsed::Print(text)) => {
            // A closed stdout is not an error here either.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            Err(ExitCode::SUCCESS)
        }
        Err(config::ParseError::Cli(e)) => e.exit(),
        Err(config::ParseError::Config(e)) => {
            eprintln!("cnlink: {e:#}");
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Proc(args) => cmd::proc::run(*args),
        Command::Collect(args) => cmd::collect::run(*args),
        Command::Record(args) => cmd::record::run(*args),
        Command::Replay(args) => cmd::replay::run(*args),
        Command::List(args) => cmd::list::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        Command::Bus(args) => cmd::bus::run(args),
        Command::Generate(args) => cmd::generate::run(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) if cmd::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cnlink: {e:#}");
            ExitCode::from(2)
        }
    }
}
