//! The `cnlink` command: a lossless process-event monitor and tools for the Linux kernel connector.
//!
//! Exit codes: 0 success (also after Ctrl-C, and when the reader of stdout goes away), 1 nothing matched (`send
//! --wait-reply` with no reply, `decode` of bytes that are not a datagram), 2 errors.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod monitor;
mod sys;
mod text;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proc(args) => cmd::proc::run(*args),
        Command::List(args) => cmd::list::run(args),
        Command::Listen(args) => cmd::listen::run(args),
        Command::Send(args) => cmd::send::run(args),
        Command::Decode(args) => cmd::decode::run(args),
        Command::Bus(args) => cmd::bus::run(args),
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
