//! Finding or building each listener before the runs.
//!
//! The C loop is compiled with the system `cc`; `cnlink` and the `proc_listen` example are built
//! with the same cargo and target directory as the harness itself; forkstat is used when it is on
//! the `PATH`. A listener that cannot be prepared is reported as unavailable, with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::listener::Spec;
use super::parse::Format;

/// The workspace root (this crate lives in `crates/cnlink-bench`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// The cargo target directory the harness was built into (`<target>/release/storm`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Runs `cmd`, returning its combined output's last lines as the error when it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stderr);
            let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            Err(format!("{:?} failed: {}", cmd.get_program(), tail[tail.len().saturating_sub(3)..].join(" | ")))
        }
        Err(e) => Err(format!("{:?}: {e}", cmd.get_program())),
    }
}

fn cargo_build(args: &[&str], build: bool) -> Result<(), String> {
    if !build {
        return Ok(());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .args(args)
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir()))
}

/// Compiles `bench/c/<name>.c` with the system `cc -O2` into the target's release directory; returns the binary.
pub(crate) fn compile_c(name: &str) -> Result<PathBuf, String> {
    let out = target_dir().join("release").join(name);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let src = workspace_root().join("bench/c").join(format!("{name}.c"));
    run(Command::new("cc").arg("-O2").arg("-o").arg(&out).arg(&src))?;
    Ok(out)
}

/// In a listener's arguments: the path of its recording (next to its output, `.pcapng`).
pub(crate) const RECORDING: &str = "{recording}";

/// Prepares the listener `format`; `build` says whether to (re)build it. Extra arguments for
/// `cnlink proc` go in `cnlink_args`.
pub(crate) fn prepare(format: Format, build: bool, cnlink_args: &[String]) -> Result<Spec, String> {
    let release = target_dir().join("release");
    match format {
        Format::Cloop => {
            let out = compile_c("cloop")?;
            Ok(Spec { name: "cloop", format, argv: vec![out.display().to_string()] })
        }
        Format::Cnlink => {
            cargo_build(&["-p", "cnlink-cli", "--bin", "cnlink"], build)?;
            let bin = release.join("cnlink");
            let mut argv = vec![bin.display().to_string(), "proc".into(), "--format".into(), "json".into()];
            argv.extend(cnlink_args.iter().cloned());
            // The subcommand must exist: `cnlink proc --help` succeeds once it has landed.
            run(Command::new(&bin).args(["proc", "--help"]).stdout(Stdio::null()))
                .map_err(|e| format!("`cnlink proc` not available yet ({e})"))?;
            Ok(Spec { name: "cnlink", format, argv })
        }
        Format::CnlinkRecord => {
            cargo_build(&["-p", "cnlink-cli", "--bin", "cnlink"], build)?;
            let bin = release.join("cnlink");
            // The same selection as `cnlink proc --format json` with the same extra arguments.
            let mut argv = vec![bin.display().to_string(), "record".into(), RECORDING.into()];
            argv.extend(cnlink_args.iter().cloned());
            run(Command::new(&bin).args(["record", "--help"]).stdout(Stdio::null()))
                .map_err(|e| format!("`cnlink record` not available yet ({e})"))?;
            Ok(Spec { name: "cnlink-record", format, argv })
        }
        Format::Sink => {
            cargo_build(&["-p", "cnlink-cli", "--bin", "cnlink"], build)?;
            let bin = release.join("cnlink");
            run(Command::new(&bin).args(["collect", "--help"]).stdout(Stdio::null()))
                .map_err(|e| format!("`cnlink collect` not available ({e})"))?;
            cnlink_testnats::find_server()?;
            // The server, spool and stream of each run are added by `super::sink`.
            let mut argv = vec![bin.display().to_string(), "proc".into()];
            argv.extend(cnlink_args.iter().cloned());
            Ok(Spec { name: "sink", format, argv })
        }
        Format::Example => {
            cargo_build(&["-p", "cnlink", "--example", "proc_listen"], build)?;
            let bin = release.join("examples/proc_listen");
            if !bin.exists() {
                return Err(format!("{} does not exist", bin.display()));
            }
            Ok(Spec { name: "example", format, argv: vec![bin.display().to_string()] })
        }
        Format::Forkstat => {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).map(|d| d.join("forkstat")).find(|f| f.exists()));
            match found.flatten() {
                Some(bin) => Ok(Spec {
                    name: "forkstat",
                    format,
                    argv: vec![bin.display().to_string(), "-e".into(), "fork,clone,exit".into()],
                }),
                None => Err("forkstat is not installed (apt-get install forkstat)".into()),
            }
        }
    }
}
