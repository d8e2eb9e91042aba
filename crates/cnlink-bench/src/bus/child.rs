//! Child processes: this binary re-executed in a role, its stdout read line by line, killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// A role process. Dropping it kills it (SIGKILL to its pid) and reaps it, so that no party outlives a run,
/// on error paths too; the roles also ask for SIGKILL when the harness dies.
pub(crate) struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
}

impl Proc {
    /// Starts this binary with `args` (a role and its options); its stderr is the harness's.
    pub(crate) fn spawn(name: &str, args: &[String]) -> Result<Proc> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut child = Command::new(exe)
            .args(args)
            .env(super::roles::PARENT_ENV, std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout for {name}"))?;
        let stdin = child.stdin.take();
        let (tx, lines) = channel();
        std::thread::Builder::new()
            .name(format!("out-{name}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("starting a reader thread")?;
        Ok(Proc { name: name.to_string(), child, stdin, lines })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the process prints, waiting up to `timeout`.
    pub(crate) fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(e).with_context(|| format!("reading from {}", self.name)),
            Err(RecvTimeoutError::Timeout) => bail!("{} said nothing for {timeout:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                bail!("{} ended its output (exit status: {status:?})", self.name)
            }
        }
    }

    /// Waits for the `ready ...` line every role prints once it is set up; returns what follows `ready`.
    pub(crate) fn ready(&mut self, timeout: Duration) -> Result<String> {
        let line = self.line(timeout)?;
        match line.strip_prefix("ready") {
            Some(rest) => Ok(rest.trim().to_string()),
            None => bail!("{}: expected a ready line, got {line:?}", self.name),
        }
    }

    /// Closes the process's stdin: the signal for a subscriber to drain and report.
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
