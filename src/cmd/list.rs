//! `cnlink list`: the connector ids the kernel has registered (`/proc/net/connector`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use cnlink::wire::CbId;

use super::Format;
use crate::monitor::json::JsonWriter;

const PATH: &str = "/proc/net/connector";

/// List the registered connector ids.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// One registered callback: the name the kernel gave it and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub(crate) name: String,
    pub(crate) id: CbId,
}

/// Parses the file's text: a `Name ID` header, then `%-15s %u:%u` per callback.
pub(crate) fn parse(text: &str) -> Vec<Registered> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let (name, id) = line.trim_end().rsplit_once(char::is_whitespace)?;
            Some(Registered { name: name.trim().to_string(), id: id.parse().ok()? })
        })
        .collect()
}

pub(crate) fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let text = match std::fs::read_to_string(PATH) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "{PATH} does not exist: the kernel has no connector (CONFIG_CONNECTOR), or this process is outside \
             the initial network namespace, where the connector does not exist"
        ),
        Err(e) => return Err(e).context(format!("reading {PATH}")),
    };
    let mut out = std::io::stdout().lock();
    let entries = parse(&text);
    match args.format {
        Format::Text => {
            writeln!(out, "{:<15} {:<12} KNOWN AS", "NAME", "ID")?;
            for r in &entries {
                let known = r.id.known_name().unwrap_or("-");
                writeln!(out, "{:<15} {:<12} {known}", r.name, format!("{}:{}", r.id.idx, r.id.val))?;
            }
        }
        Format::Json => {
            let mut w = JsonWriter::new();
            for r in &entries {
                w.begin();
                w.str_field("name", &r.name);
                w.u64_field("idx", r.id.idx.into());
                w.u64_field("val", r.id.val.into());
                match r.id.known_name() {
                    Some(k) => w.str_field("known_as", k),
                    None => w.null_field("known_as"),
                }
                w.end();
            }
            out.write_all(w.bytes())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let t = "Name            ID\ncn_proc         1:1\nw1              3:1\na_very_long_callback_name 14:1110\n";
        let r = parse(t);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], Registered { name: "cn_proc".into(), id: CbId::PROC });
        assert_eq!(r[2].name, "a_very_long_callback_name");
        assert_eq!(r[2].id, CbId::new(14, 1110));
    }
}
