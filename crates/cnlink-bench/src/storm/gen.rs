//! The storm generator: workers that create children in a tight loop and record every child id.
//!
//! A "child" is one task the kernel reports with a fork event and later an exit event:
//! - [`Kind::Thread`]: `std::thread::spawn` + `join`; the id is the thread's `gettid()`, sent back
//!   through the join handle.
//! - [`Kind::Fork`]: `fork()`, the child calls `_exit(0)`, the parent `waitpid`s; the id is the
//!   pid `fork` returned.
//! - [`Kind::Exec`]: `fork()`, the child `execv`s `/bin/true`, the parent `waitpid`s.
//! - [`Kind::All`]: each worker cycles thread, fork, exec.
//!
//! The forked child only calls async-signal-safe functions (`execv`, `_exit`), so forking from the
//! multi-threaded harness is sound.

use crate::sys::ExecArgs;
use std::io;
use std::time::{Duration, Instant};

use rustix::process::{waitpid, Pid, WaitOptions};

/// What each worker creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Thread create + join.
    Thread,
    /// fork + `_exit` + waitpid.
    Fork,
    /// fork + exec of `/bin/true` + waitpid.
    Exec,
    /// Each worker cycles thread, fork, exec.
    All,
}

impl Kind {
    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Thread => "thread",
            Kind::Fork => "fork",
            Kind::Exec => "exec",
            Kind::All => "all",
        }
    }
}

/// What a storm produced.
#[derive(Debug)]
pub(crate) struct Storm {
    /// Every child id created, in creation order per worker (ids repeat: pids are reused).
    pub(crate) ids: Vec<i32>,
    /// Wall time from the first worker start to the last worker end.
    pub(crate) elapsed: Duration,
}

impl Storm {
    /// Children created per second.
    pub(crate) fn rate(&self) -> f64 {
        self.ids.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs a storm of `children` children split over `workers` threads, all at the caller's priority.
pub(crate) fn run(kind: Kind, children: u64, workers: u32) -> io::Result<Storm> {
    let workers = u64::from(workers.max(1));
    let exe = ExecArgs::new()?;
    let start = Instant::now();
    let results: Vec<io::Result<Vec<i32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let n = children / workers + u64::from(w < children % workers);
                let exe = &exe;
                s.spawn(move || worker(kind, n, exe))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(io::Error::other("storm worker panicked"))))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut ids = Vec::with_capacity(children as usize);
    for r in results {
        ids.extend(r?);
    }
    Ok(Storm { ids, elapsed })
}

/// One worker: creates `n` children of `kind` one after the other.
fn worker(kind: Kind, n: u64, exe: &ExecArgs) -> io::Result<Vec<i32>> {
    let mut ids = Vec::with_capacity(n as usize);
    for i in 0..n {
        let this = match kind {
            Kind::All => [Kind::Thread, Kind::Fork, Kind::Exec][(i % 3) as usize],
            k => k,
        };
        let id = match this {
            Kind::Thread => thread_child()?,
            Kind::Fork => fork_child(None)?,
            Kind::Exec | Kind::All => fork_child(Some(exe))?,
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Creates and joins one thread; returns its kernel thread id.
fn thread_child() -> io::Result<i32> {
    let handle =
        std::thread::Builder::new().stack_size(64 * 1024).spawn(|| rustix::thread::gettid().as_raw_nonzero().get())?;
    handle.join().map_err(|_| io::Error::other("storm thread panicked"))
}

/// Forks one child that exits at once (or execs `/bin/true`), waits for it, returns its pid.
fn fork_child(exec: Option<&ExecArgs>) -> io::Result<i32> {
    let pid = crate::sys::fork_child(exec)?;
    let child = Pid::from_raw(pid).ok_or_else(|| io::Error::other("fork returned pid 0"))?;
    loop {
        match waitpid(Some(child), WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if status.exit_status() != Some(0) {
                    return Err(io::Error::other(format!("storm child {pid} ended with {status:?}")));
                }
                return Ok(pid);
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Forks one marker child (fork + `_exit(0)`), used to probe whether a listener receives events.
pub(crate) fn marker() -> io::Result<i32> {
    fork_child(None)
}
