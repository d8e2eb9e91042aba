//! `cnlink generate`: the man page and shell completions, generated from the command-line definitions.

use std::io::Write;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum What {
    /// The man page (roff), every subcommand included: `cnlink generate man | man -l -`.
    Man,
    /// Completions for bash.
    CompleteBash,
    /// Completions for zsh.
    CompleteZsh,
    /// Completions for fish.
    CompleteFish,
}

/// Print the man page or a shell completion script.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// What to print.
    #[arg(value_enum)]
    what: What,
}

/// Runs `cnlink generate`; `cmd` is the whole command line's definition.
pub(crate) fn run(args: GenerateArgs, mut cmd: Command) -> anyhow::Result<ExitCode> {
    cmd.build();
    let mut out = Vec::new();
    match args.what {
        What::Man => man(&cmd, &mut out)?,
        What::CompleteBash => clap_complete::generate(Shell::Bash, &mut cmd, "cnlink", &mut out),
        What::CompleteZsh => clap_complete::generate(Shell::Zsh, &mut cmd, "cnlink", &mut out),
        What::CompleteFish => clap_complete::generate(Shell::Fish, &mut cmd, "cnlink", &mut out),
    }
    std::io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// One page: the command's own sections, then a section per subcommand (depth first) with its synopsis,
/// description and options as subsections.
fn man(cmd: &Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone()).date("").source(format!("cnlink {}", env!("CARGO_PKG_VERSION")));
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        subcommand(sub, out)?;
    }
    page.render_version_section(out)?;
    Ok(())
}

fn subcommand(cmd: &Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    writeln!(out, ".SH \"{}\"", name.to_uppercase().replace('"', ""))?;
    let page = clap_mangen::Man::new(cmd.clone());
    let mut body = Vec::new();
    page.render_synopsis_section(&mut body)?;
    page.render_description_section(&mut body)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut body)?;
    }
    if cmd.get_after_long_help().or(cmd.get_after_help()).is_some() {
        page.render_extra_section(&mut body)?;
    }
    // The subcommand's sections become subsections of its own section.
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => writeln!(out, ".SS {title}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        subcommand(sub, out)?;
    }
    Ok(())
}
