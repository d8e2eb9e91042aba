//! `cnlink decode`: decode a datagram offline, with the same printer as `listen`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use cnlink::wire::pretty::hexdump;
use cnlink::wire::{NlMessages, Pretty, NLMSG_HDRLEN};

/// Decode a datagram given as hex or a binary file.
#[derive(Debug, clap::Args)]
pub(crate) struct DecodeArgs {
    /// The datagram as hex (spaces, `:` and `0x` allowed); `-` reads hex from stdin.
    #[arg(conflicts_with = "file")]
    hex: Vec<String>,
    /// Read the raw datagram from this file instead (`-` for stdin).
    #[arg(short, long)]
    file: Option<PathBuf>,
}

pub(crate) fn run(args: DecodeArgs) -> anyhow::Result<ExitCode> {
    let bytes = match (&args.file, args.hex.as_slice()) {
        (Some(p), _) if p.as_os_str() == "-" => {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).context("reading stdin")?;
            v
        }
        (Some(p), _) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (None, [one]) if one == "-" => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
            super::parse_hex(&s).map_err(anyhow::Error::msg)?
        }
        (None, []) => bail!("give the datagram as hex arguments, `-` for hex on stdin, or --file PATH"),
        (None, words) => super::parse_hex(&words.join(" ")).map_err(anyhow::Error::msg)?,
    };
    if bytes.is_empty() {
        bail!("no bytes to decode");
    }
    let mut out = std::io::stdout().lock();
    if NlMessages::new(&bytes).next().is_none() {
        let mut dump = String::new();
        hexdump(&mut dump, &bytes, "  ")?;
        write!(out, "malformed: {} bytes, shorter than a netlink header ({NLMSG_HDRLEN})\n{dump}", bytes.len())?;
    }
    write!(out, "{}", Pretty(&bytes))?;
    out.flush()?;
    // 1 when the bytes do not hold even one well-formed netlink message.
    let ok = NlMessages::new(&bytes).next().is_some_and(|m| m.is_ok());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
