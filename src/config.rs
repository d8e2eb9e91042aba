//! `--config FILE`: options of `cnlink proc`, `cnlink bus` (and any subcommand with a `--config` flag) from a
//! TOML file, merged with the command line, which wins.
//!
//! The loader knows no flag by name: it reads them from the clap definitions. The file has one table per
//! subcommand, named after it; its keys are the subcommand's long flag names (and their long aliases). A nested
//! table groups flags by prefix: key `stream` in `[proc.sink]` is `--sink-stream`, and `url` is `--sink-url`, an
//! alias of `--sink`. Values are TOML strings, integers or floats (given to the flag's own value parser, so
//! `rcvbuf = "256M"` and `queue = 4096` are checked as the command line would check them), booleans for
//! switches, an integer for counted flags (`-vv`), and arrays for repeatable flags.
//!
//! Merging: a flag given on the command line wins over the file, and so does a flag that conflicts with one
//! given on the command line. Unknown keys, values of the wrong type and contradictions within the file are
//! errors naming the file, the line and column, and the key. Every section in the file is checked, not only the
//! one of the subcommand that runs. `--print-config` prints the merged options of the subcommand as TOML, each
//! with where it came from, and exits.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The id of the `--config` flag that makes a subcommand configurable.
pub(crate) const CONFIG_ID: &str = "config";
/// The id of the `--print-config` flag.
pub(crate) const PRINT_ID: &str = "print_config";

/// What the command line asked for, once merged with the file.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Run with these matches.
    Run(ArgMatches),
    /// `--print-config`: print this and exit.
    Print(String),
}

/// Why parsing failed.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// The command line itself (clap prints these, with usage).
    Cli(clap::Error),
    /// The configuration file.
    Config(anyhow::Error),
}

/// One setting from the file.
#[derive(Debug, Clone)]
struct Setting {
    /// `proc.sink.url`, for messages.
    key: String,
    /// The flag it sets (the `Arg`'s id).
    id: String,
    /// Its long name.
    long: String,
    value: Value,
    /// Byte offset of the key in the file.
    at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Switch(bool),
    Count(u8),
    Values(Vec<String>),
}

/// Parses `argv` against `cmd`, merging the file given to the subcommand's `--config`.
pub(crate) fn parse(mut cmd: Command, argv: Vec<OsString>) -> Result<Parsed, ParseError> {
    cmd.build();
    let matches = cmd.clone().try_get_matches_from(&argv).map_err(ParseError::Cli)?;
    let Some((name, sub)) = matches.subcommand() else { return Ok(Parsed::Run(matches)) };
    let Some(sub_cmd) = cmd.find_subcommand(name).filter(|c| configurable(c)).cloned() else {
        return Ok(Parsed::Run(matches));
    };
    let print = sub.try_get_one::<bool>(PRINT_ID).ok().flatten().copied().unwrap_or(false);
    let Some(file) = sub.try_get_one::<PathBuf>(CONFIG_ID).ok().flatten().cloned() else {
        return Ok(if print { Parsed::Print(print_config(&sub_cmd, sub, &[], None)) } else { Parsed::Run(matches) });
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("--config: reading {}", file.display()))
        .map_err(ParseError::Config)?;
    let sections = load(&cmd, &file, &text).map_err(ParseError::Config)?;
    let settings: Vec<Setting> = sections.into_iter().filter(|(n, _)| n == name).flat_map(|(_, s)| s).collect();
    let used = not_overridden(&sub_cmd, sub, settings);
    let argv = inject(&argv, name, &used).map_err(ParseError::Config)?;
    let merged = match cmd.try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return Err(ParseError::Config(attribute(e, &file, &text, &used))),
    };
    if print {
        let sub = merged.subcommand_matches(name).expect("the same subcommand");
        return Ok(Parsed::Print(print_config(&sub_cmd, sub, &used, Some(&file))));
    }
    Ok(Parsed::Run(merged))
}

/// Whether a subcommand takes `--config`.
fn configurable(cmd: &Command) -> bool {
    cmd.get_arguments().any(|a| a.get_id() == CONFIG_ID)
}

/// Flags that the file cannot set.
fn settable(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    arg.get_long().is_some()
        && ![CONFIG_ID, PRINT_ID].contains(&id)
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// `(line, column)`, both from 1, of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn located(file: &Path, text: &str, at: usize, key: &str, msg: impl std::fmt::Display) -> anyhow::Error {
    let (line, col) = line_col(text, at);
    anyhow!("{}:{line}:{col}: {key}: {msg}", file.display())
}

/// Parses and checks every section of the file: keys, types and values.
fn load(root: &Command, file: &Path, text: &str) -> anyhow::Result<Vec<(String, Vec<Setting>)>> {
    let doc = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let (line, col) = line_col(text, at);
        anyhow!("{}:{line}:{col}: {}", file.display(), e.message().trim_end())
    })?;
    let sections: Vec<&str> = root.get_subcommands().filter(|c| configurable(c)).map(|c| c.get_name()).collect();
    let mut out = Vec::new();
    let mut entries: Vec<_> = doc.get_ref().iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    for (name, value) in entries {
        let (name, at) = (name.get_ref().as_ref(), name.span().start);
        let Some(cmd) = root.find_subcommand(name).filter(|c| configurable(c)) else {
            bail!(located(file, text, at, name, format!("unknown section (known: {})", sections.join(", "))));
        };
        let DeValue::Table(table) = value.get_ref() else {
            bail!(located(file, text, at, name, format!("must be a table ([{name}])")));
        };
        let mut settings = Vec::new();
        section(cmd, name, table, file, text, &mut settings)?;
        out.push((name.to_string(), settings));
    }
    Ok(out)
}

/// Reads one subcommand's table (and its nested group tables) into settings.
fn section(
    cmd: &Command,
    name: &str,
    table: &DeTable<'_>,
    file: &Path,
    text: &str,
    out: &mut Vec<Setting>,
) -> anyhow::Result<()> {
    let mut flat: Vec<(String, String, &Spanned<DeValue<'_>>, usize)> = Vec::new();
    for (k, v) in table {
        let key = k.get_ref().as_ref();
        match v.get_ref() {
            DeValue::Table(group) => {
                for (k2, v2) in group {
                    let sub = k2.get_ref().as_ref();
                    flat.push((format!("{name}.{key}.{sub}"), format!("{key}-{sub}"), v2, k2.span().start));
                }
            }
            _ => flat.push((format!("{name}.{key}"), key.to_string(), v, k.span().start)),
        }
    }
    flat.sort_by_key(|f| f.3);
    for (key, long, value, at) in flat {
        // A flag's long aliases are keys too: `url` in `[proc.sink]` is `--sink-url`, an alias of `--sink`.
        let named = |a: &Arg| {
            a.get_long() == Some(long.as_str()) || a.get_all_aliases().is_some_and(|all| all.contains(&long.as_str()))
        };
        let arg = cmd.get_arguments().find(|a| named(a) && settable(a));
        let Some(arg) = arg else {
            bail!(located(file, text, at, &key, format!("unknown key: `cnlink {name}` has no --{long}")));
        };
        let long = arg.get_long().unwrap_or_default().to_string();
        let value = convert(cmd, arg, value).map_err(|m| located(file, text, at, &key, m))?;
        if let Some(prev) = out.iter().find(|s| s.id == arg.get_id().as_str()) {
            let (line, _) = line_col(text, prev.at);
            bail!(located(file, text, at, &key, format!("--{long} is already set by {} on line {line}", prev.key)));
        }
        out.push(Setting { key, id: arg.get_id().to_string(), long, value, at });
    }
    Ok(())
}

/// A TOML value as the flag takes it, checked by the flag's own value parser.
fn convert(cmd: &Command, arg: &Arg, value: &Spanned<DeValue<'_>>) -> Result<Value, String> {
    let long = arg.get_long().unwrap_or_default();
    match (arg.get_action(), value.get_ref()) {
        (ArgAction::SetTrue | ArgAction::SetFalse, DeValue::Boolean(b)) => Ok(Value::Switch(*b)),
        (ArgAction::SetTrue | ArgAction::SetFalse, v) => Err(format!("expected a boolean, found {}", type_name(v))),
        (ArgAction::Count, DeValue::Integer(i)) => {
            let n = i.as_str().parse::<u8>().map_err(|_| format!("expected a count from 0 to 255, found {i}"))?;
            Ok(Value::Count(n))
        }
        (ArgAction::Count, v) => Err(format!("expected an integer (how many times), found {}", type_name(v))),
        (action, DeValue::Array(items)) => {
            let repeatable =
                matches!(action, ArgAction::Append) || arg.get_num_args().is_some_and(|r| r.max_values() > 1);
            if !repeatable {
                return Err(format!("--{long} takes one value, not an array"));
            }
            let values = items.iter().map(|v| scalar(v.get_ref())).collect::<Result<Vec<_>, _>>()?;
            values.iter().try_for_each(|v| check(cmd, arg, v))?;
            Ok(Value::Values(values))
        }
        (_, v) => {
            let s = scalar(v)?;
            check(cmd, arg, &s)?;
            Ok(Value::Values(vec![s]))
        }
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A string, number or boolean as the command line would spell it.
fn scalar(v: &DeValue<'_>) -> Result<String, String> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            // TOML allows 1_000 and 0x10; the command line's parsers want plain digits.
            let digits = i.as_str().replace('_', "");
            Ok(match i.radix() {
                10 => digits,
                radix => {
                    let body = digits.get(2..).unwrap_or_default();
                    i64::from_str_radix(body, radix).map_err(|e| format!("integer {i}: {e}"))?.to_string()
                }
            })
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("expected a string or a number, found {}", type_name(other))),
    }
}

/// Runs the flag's value parser on `raw` (by parsing `--long=raw` alone); the error is clap's message without
/// its decoration.
fn check(cmd: &Command, arg: &Arg, raw: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default();
    let probe = cmd.clone().no_binary_name(true).try_get_matches_from([format!("--{long}={raw}")]);
    let e = match probe {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    use clap::error::ErrorKind as K;
    if !matches!(
        e.kind(),
        K::InvalidValue | K::ValueValidation | K::InvalidUtf8 | K::TooManyValues | K::WrongNumberOfValues | K::NoEquals
    ) {
        // Not about this value: a missing required argument of the subcommand, for example.
        return Ok(());
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
    let hints: Vec<&str> =
        rendered.lines().skip(1).map(str::trim).filter(|l| l.starts_with("[possible values")).collect();
    Err(if hints.is_empty() { first } else { format!("{first} {}", hints.join(" ")) })
}

/// The settings the command line does not override: neither the same flag nor one that conflicts with it.
fn not_overridden(cmd: &Command, m: &ArgMatches, settings: Vec<Setting>) -> Vec<Setting> {
    let on_cli = |id: &str| m.value_source(id) == Some(ValueSource::CommandLine);
    let given: Vec<&Arg> = cmd.get_arguments().filter(|a| on_cli(a.get_id().as_str())).collect();
    settings
        .into_iter()
        .filter(|s| {
            let Some(arg) = cmd.get_arguments().find(|a| a.get_id() == s.id.as_str()) else { return false };
            let conflicts = cmd.get_arg_conflicts_with(arg);
            !on_cli(&s.id)
                && !given.iter().any(|g| {
                    conflicts.iter().any(|c| c.get_id() == g.get_id())
                        || cmd.get_arg_conflicts_with(g).iter().any(|c| c.get_id() == arg.get_id())
                })
        })
        .collect()
}

/// The command line with the settings inserted right after the subcommand's name (so that `--` and positional
/// arguments keep their meaning).
fn inject(argv: &[OsString], name: &str, settings: &[Setting]) -> anyhow::Result<Vec<OsString>> {
    // The top-level command takes no options with values, so the first word that is not an option is the
    // subcommand.
    let pos = argv
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + 1)
        .filter(|&p| argv[p] == *name)
        .with_context(|| format!("cannot find the subcommand {name:?} on the command line"))?;
    let mut out: Vec<OsString> = argv[..=pos].to_vec();
    for s in settings {
        match &s.value {
            Value::Switch(true) => out.push(format!("--{}", s.long).into()),
            Value::Switch(false) => {}
            Value::Count(n) => out.extend((0..*n).map(|_| OsString::from(format!("--{}", s.long)))),
            Value::Values(vs) => out.extend(vs.iter().map(|v| OsString::from(format!("--{}={v}", s.long)))),
        }
    }
    out.extend(argv[pos + 1..].iter().cloned());
    Ok(out)
}

/// Ties clap's complaint about the merged command line (a conflict, a missing required flag) to the file's
/// keys it names.
fn attribute(e: clap::Error, file: &Path, text: &str, used: &[Setting]) -> anyhow::Error {
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
    let mentions = |long: &str| {
        let flag = format!("--{long}");
        rendered.match_indices(&flag).any(|(i, _)| {
            !rendered[i + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
    };
    let mut named: Vec<&Setting> = used.iter().filter(|s| mentions(&s.long)).collect();
    named.sort_by_key(|s| s.at);
    match named.as_slice() {
        [] => anyhow!("{}: with the options from this file: {first}", file.display()),
        [one] => located(file, text, one.at, &one.key, first),
        [one, rest @ ..] => {
            let others: Vec<String> = rest
                .iter()
                .map(|s| {
                    let (line, _) = line_col(text, s.at);
                    format!("{} (line {line})", s.key)
                })
                .collect();
            located(file, text, one.at, &one.key, format!("{first} (with {})", others.join(", ")))
        }
    }
}

/// A TOML value for a raw command-line value: integers bare, everything else a string.
fn toml_value(raw: &OsStr) -> String {
    let s = raw.to_string_lossy();
    match s.parse::<i64>() {
        Ok(n) if n.to_string() == s => s.into_owned(),
        _ => toml::Value::String(s.into_owned()).to_string(),
    }
}

/// The merged options of one subcommand as TOML, in the order of its flags, each with where it came from.
fn print_config(cmd: &Command, m: &ArgMatches, from_file: &[Setting], file: Option<&Path>) -> String {
    let name = cmd.get_name();
    let mut out = format!("# cnlink {name}: the options in effect (command line, then ");
    match file {
        Some(f) => {
            let _ = write!(out, "{}, then the defaults)\n[{name}]\n", f.display());
        }
        None => {
            let _ = write!(out, "the defaults)\n[{name}]\n");
        }
    }
    for arg in cmd.get_arguments().filter(|a| settable(a)) {
        let (id, long) = (arg.get_id().as_str(), arg.get_long().unwrap_or_default());
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) if from_file.iter().any(|s| s.id == id) => "file",
            Some(ValueSource::CommandLine) => "command line",
            Some(ValueSource::DefaultValue) => "default",
            Some(ValueSource::EnvVariable) => "environment",
            _ => "not set",
        };
        let value = match arg.get_action() {
            // A switch is `true` when it is given (`--no-x` with SetFalse too).
            ArgAction::SetTrue => m.get_flag(id).to_string(),
            ArgAction::SetFalse => (!m.get_flag(id)).to_string(),
            ArgAction::Count => m.get_count(id).to_string(),
            action => {
                let raw: Vec<&OsStr> = m.get_raw(id).map(|r| r.collect()).unwrap_or_default();
                match (action, raw.as_slice()) {
                    (_, []) => {
                        let _ = writeln!(out, "# {long} =  # {source}");
                        continue;
                    }
                    (ArgAction::Append, vs) => {
                        format!("[{}]", vs.iter().map(|v| toml_value(v)).collect::<Vec<_>>().join(", "))
                    }
                    (_, [one]) => toml_value(one),
                    (_, vs) => format!("[{}]", vs.iter().map(|v| toml_value(v)).collect::<Vec<_>>().join(", ")),
                }
            }
        };
        let _ = writeln!(out, "{long} = {value}  # {source}");
    }
    out
}

#[cfg(test)]
mod tests;
