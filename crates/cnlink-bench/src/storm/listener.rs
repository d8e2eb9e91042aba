//! Running one listener: start it (optionally at a lower priority), wait until it provably
//! receives proc events, let it drain after the storm, stop it with SIGINT and collect its CPU
//! time and peak memory.
//!
//! Readiness is checked, not slept: once the listener's connector socket shows up in
//! `/proc/net/netlink` as a member of group 1, the harness stops the listener (SIGSTOP), forks a
//! marker child and looks whether the socket's receive queue grew; then it resumes the listener
//! (SIGCONT). A queue that grows proves the kernel delivers proc events to that socket. Draining is
//! checked with a marker, a child forked after the storm whose exit the listener prints once it has
//! handled everything before it (other processes on the machine cannot hold that up), or by quiet (the
//! listener's CPU time and output size stop changing: for a listener whose last lines sit in a stdio
//! buffer, on a quiet machine); and an empty socket queue either way.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

use super::gen;
use super::parse::Format;
use super::prepare::RECORDING;
use super::procfs::{self, NlSock};

/// How to start one listener.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    /// The listener's name in reports.
    pub(crate) name: &'static str,
    /// Its output format.
    pub(crate) format: Format,
    /// Program and arguments.
    pub(crate) argv: Vec<String>,
}

/// A listener that is running and subscribed.
pub(crate) struct Running {
    pid: i32,
    socket: NlSock,
    out: PathBuf,
    /// The listener's recording, for `cnlink record` (it prints nothing).
    pub(crate) recording: Option<PathBuf>,
    err: PathBuf,
    /// Pids of the marker children forked to prove readiness (their events are not storm events).
    pub(crate) markers: Vec<i32>,
}

/// What a stopped listener cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    /// User + system CPU time of the listener process (all its threads), in microseconds.
    pub(crate) cpu_us: u64,
    /// Peak resident set size of the listener's program, KiB (`VmHWM`, read just before stopping
    /// it; `wait4`'s `ru_maxrss` would include the harness's memory from before the exec).
    pub(crate) max_rss_kib: u64,
    /// Messages the kernel dropped at the listener's socket (receive buffer full), from
    /// `/proc/net/netlink`, read just before stopping it.
    pub(crate) kernel_drops: u64,
    /// Seconds from SIGINT to its exit (a sink drains its spool then).
    pub(crate) stop_secs: f64,
}

/// Starts `spec` at niceness `nice` with its output in `out` (and its recording next to it, for a recorder) and
/// waits until it receives events.
pub(crate) fn start(spec: &Spec, nice: i32, out: &Path) -> Result<Running> {
    let err = out.with_extension("stderr");
    let recording = spec.argv.iter().any(|a| a == RECORDING).then(|| out.with_extension("pcapng"));
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| match (&recording, a == RECORDING) {
            (Some(r), true) => r.display().to_string(),
            _ => a.clone(),
        })
        .collect();
    let mut cmd = if nice != 0 {
        let mut c = Command::new("nice");
        c.arg("-n").arg(nice.to_string()).args(&argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(out).with_context(|| format!("creating {}", out.display()))?)
        .stderr(File::create(&err)?)
        .spawn()
        .with_context(|| format!("starting {argv:?}"))?;
    // The process is reaped with wait4 in `stop` (for its rusage), not through `Child`.
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    let mut running = Running {
        pid,
        socket: NlSock { protocol: 0, port: 0, groups: 0, rmem: 0, drops: 0, inode: 0 },
        out: out.into(),
        recording,
        err,
        markers: vec![],
    };
    match running.wait_subscribed() {
        Ok(()) => Ok(running),
        Err(e) => {
            let _ = running.stop();
            Err(e.context(format!("{} did not subscribe; stderr: {}", spec.name, running.stderr())))
        }
    }
}

impl Running {
    fn pid(&self) -> Pid {
        // `pid` came from a spawned child, so it is positive.
        Pid::from_raw(self.pid).expect("positive pid")
    }

    /// The listener's stderr so far (for error messages).
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default().trim().chars().take(2000).collect()
    }

    fn alive(&self) -> Result<()> {
        if let Some((status, _)) = reap(self.pid, false)? {
            bail!("listener exited early (wait status {})", status.0);
        }
        Ok(())
    }

    /// Waits for the connector socket, then proves event delivery with a marker child.
    fn wait_subscribed(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.alive()?;
            if let Some(sock) = procfs::proc_socket(self.pid).unwrap_or(None) {
                self.socket = sock;
                break;
            }
            if Instant::now() > deadline {
                bail!("no connector socket in group 1 after 20 s");
            }
            sleep(Duration::from_millis(10));
        }
        while Instant::now() < deadline {
            self.alive()?;
            kill_process(self.pid(), Signal::STOP)?;
            let probe = (|| -> io::Result<bool> {
                let before = procfs::socket_by_inode(self.socket.inode)?.map_or(0, |s| s.rmem);
                self.markers.push(gen::marker()?);
                let mut grew = false;
                for _ in 0..10 {
                    sleep(Duration::from_millis(5));
                    let now = procfs::socket_by_inode(self.socket.inode)?.map_or(0, |s| s.rmem);
                    if now > before {
                        grew = true;
                        break;
                    }
                }
                Ok(grew)
            })();
            kill_process(self.pid(), Signal::CONT)?;
            if probe? {
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        bail!("the listener's socket received no proc events within 20 s")
    }

    /// Waits until the listener's output holds `needle` and its socket's queue is empty, or until it has gone
    /// quiet (see [`Running::settle`]); at most `limit`.
    #[allow(dead_code)] // The argv benchmark's; the storm drains with a marker.
    pub(crate) fn wait_output(&self, needle: &str, limit: Duration) -> Result<Duration> {
        let mut file = File::open(&self.out)?;
        let mut text = Vec::new();
        self.settle(limit, || {
            use std::io::Read;
            file.read_to_end(&mut text)?;
            Ok(text.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
    }

    /// Waits until the listener has printed the exit of a marker child forked now (another one every 2 s, in
    /// case one was lost) and its socket's queue is empty, or until it has gone quiet (see
    /// [`Running::settle`]); at most `limit`.
    pub(crate) fn drain_marked(&mut self, format: Format, limit: Duration) -> Result<Duration> {
        use std::io::Read;
        if let Some(path) = self.recording.clone() {
            return self.drain_recording(&path, limit);
        }
        let mut file = File::open(&self.out)?;
        let mut text = Vec::new();
        let mut seen = false;
        self.drain_with(limit, |mine| {
            file.read_to_end(&mut text)?;
            let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in String::from_utf8_lossy(&text[..end]).lines() {
                if let super::parse::Line::Exit { pid, .. } = super::parse::parse(format, line) {
                    seen |= mine.contains(&pid);
                }
            }
            text.drain(..end);
            Ok(seen)
        })
    }

    /// As [`Running::drain_marked`], for a listener whose output is elsewhere (the sink's stream): `handled` is
    /// asked, with this drain's markers so far, whether the exit of one of them is out.
    pub(crate) fn drain_with(
        &mut self,
        limit: Duration,
        mut handled: impl FnMut(&[i32]) -> Result<bool>,
    ) -> Result<Duration> {
        let mut last_marker: Option<Instant> = None;
        // This drain's markers (those of the readiness check were handled long ago).
        let mut markers = Vec::new();
        let r = self.settle(limit, || {
            if last_marker.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
                markers.push(gen::marker()?);
                last_marker = Some(Instant::now());
            }
            handled(&markers)
        });
        self.markers.extend(markers);
        r
    }

    /// [`Running::drain_marked`] for a recorder: the marker's exit is looked for in its recording.
    fn drain_recording(&mut self, path: &Path, limit: Duration) -> Result<Duration> {
        let mut scanner = super::recording::ExitScanner::open(path)?;
        let mut seen = false;
        self.drain_with(limit, |mine| {
            seen |= scanner.exits()?.iter().any(|p| mine.contains(p));
            Ok(seen)
        })
    }

    /// Polls every 50 ms until the listener's socket is empty and either `done` holds (a line the listener
    /// prints once it has handled the storm: other processes on the machine cannot hold that up) or the
    /// listener has gone quiet (its CPU time and output size unchanged for 200 ms: what a listener whose
    /// output sits in a stdio buffer shows on a quiet machine).
    fn settle(&self, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<Duration> {
        let start = Instant::now();
        let mut last = (u64::MAX, u64::MAX);
        let mut quiet = 0;
        while start.elapsed() < limit {
            self.alive()?;
            let rmem = procfs::socket_by_inode(self.socket.inode)?.map_or(0, |s| s.rmem);
            let out = self.recording.as_ref().unwrap_or(&self.out);
            let now = (procfs::cpu_ticks(self.pid)?, std::fs::metadata(out)?.len());
            quiet = if rmem == 0 && now == last { quiet + 1 } else { 0 };
            last = now;
            if (done()? && rmem == 0) || quiet >= 4 {
                return Ok(start.elapsed());
            }
            sleep(Duration::from_millis(50));
        }
        bail!("listener still busy after {limit:?}")
    }

    /// Stops the listener with SIGINT (SIGKILL after 5 s) and returns its resource usage.
    pub(crate) fn stop(&self) -> Result<Usage> {
        self.stop_within(Duration::from_secs(5))
    }

    /// Stops the listener with SIGINT (SIGKILL after `grace`) and returns its resource usage.
    pub(crate) fn stop_within(&self, grace: Duration) -> Result<Usage> {
        let kernel_drops = procfs::socket_by_inode(self.socket.inode).ok().flatten().map_or(0, |s| s.drops);
        let hwm = procfs::peak_rss_kib(self.pid).ok();
        let _ = kill_process(self.pid(), Signal::CONT);
        let _ = kill_process(self.pid(), Signal::INT);
        let stopping = Instant::now();
        let deadline = stopping + grace;
        let (_, ru) = loop {
            if let Some(r) = reap(self.pid, false)? {
                break r;
            }
            if Instant::now() > deadline {
                let _ = kill_process(self.pid(), Signal::KILL);
                break reap(self.pid, true)?.context("listener vanished")?;
            }
            sleep(Duration::from_millis(10));
        };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Ok(Usage {
            cpu_us: us(ru.ru_utime) + us(ru.ru_stime),
            max_rss_kib: hwm.unwrap_or(ru.ru_maxrss as u64),
            kernel_drops,
            stop_secs: stopping.elapsed().as_secs_f64(),
        })
    }
}

/// `wait4` on `pid`; `None` when it has not exited and `block` is false.
fn reap(pid: i32, block: bool) -> io::Result<Option<(WaitStatus, libc::rusage)>> {
    Ok(crate::sys::wait4(pid, block)?.map(|(status, ru)| (WaitStatus(status), ru)))
}

/// A raw wait status.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitStatus(pub(crate) i32);
