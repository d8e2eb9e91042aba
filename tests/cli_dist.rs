//! What is shipped besides the binary: the systemd units (`systemd-analyze verify`), the man page (`man -l`),
//! the shell completions (`bash -n`, `zsh -n`, `fish -n`) and the example configuration.

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use cli_common::cnlink;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("cnlink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a checking tool; `None` (a skip, or a failure under `CI=true`) when it is not installed.
fn tool(test: &str, mut cmd: Command) -> Option<Output> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    match cmd.stdin(Stdio::null()).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "{test}: {name} is missing (see .ci/run)");
            eprintln!("{test}: skipped: {name} is not installed");
            None
        }
        Err(e) => panic!("{test}: running {name}: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Copies of the units whose ExecStart is the binary under test (verify wants it to exist).
fn units(dir: &Path, edit: impl Fn(&str) -> String) -> Vec<PathBuf> {
    ["cnlink-proc.service", "cnlink-bus.service"]
        .iter()
        .map(|name| {
            let unit = std::fs::read_to_string(repo("dist/systemd").join(name)).unwrap();
            let unit = edit(
                &unit.replace("ExecStart=/usr/bin/cnlink", &format!("ExecStart={}", env!("CARGO_BIN_EXE_cnlink"))),
            );
            let path = dir.join(name);
            std::fs::write(&path, unit).unwrap();
            path
        })
        .collect()
}

fn verify(paths: &[PathBuf]) -> Option<Output> {
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--man=no"]).args(paths);
    tool("systemd_units_verify", cmd)
}

#[test]
fn systemd_units_verify() {
    let dir = TempDir::new("units");
    let paths = units(&dir.0, str::to_string);
    let Some(out) = verify(&paths) else { return };
    assert!(out.status.success() && text(&out).trim().is_empty(), "systemd-analyze verify: {}", text(&out));
    for p in &paths {
        let unit = std::fs::read_to_string(p).unwrap();
        for line in ["Type=notify", "WatchdogSec=", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"] {
            assert!(unit.contains(line), "{}: no {line}", p.display());
        }
        assert!(unit.contains("RestrictAddressFamilies=AF_NETLINK AF_UNIX"), "{}", p.display());
        assert!(unit.contains("\nCapabilityBoundingSet=CAP_NET_ADMIN\n"), "{}", p.display());
        assert!(unit.contains("--config /etc/cnlink/cnlink.toml"), "{}", p.display());
    }
    // The check is not blind: a broken copy is reported.
    let broken = TempDir::new("units-broken");
    let paths = units(&broken.0, |u| u.replace("WatchdogSec=30s", "WatchdogSec=soon"));
    let out = verify(&paths).unwrap();
    assert!(text(&out).contains("Failed to parse sec value"), "{}", text(&out));
}

fn generate(what: &str) -> Vec<u8> {
    let out = cnlink().args(["generate", what]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    out.stdout
}

#[test]
fn the_man_page_renders_with_every_subcommand() {
    let dir = TempDir::new("man");
    let page = dir.0.join("cnlink.1");
    std::fs::write(&page, generate("man")).unwrap();
    let mut cmd = Command::new("man");
    cmd.args(["--warnings", "-l", "-Tutf8"]).arg(&page).env("MANWIDTH", "100").env("MANPAGER", "cat");
    let Some(out) = tool("the_man_page_renders_with_every_subcommand", cmd) else { return };
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stderr.is_empty(), "groff warnings: {}", String::from_utf8_lossy(&out.stderr));
    // Rendered text has overstrikes for bold; compare the plain letters.
    let plain: String = {
        let mut s = String::new();
        for c in shown.chars() {
            if c == '\u{8}' {
                s.pop();
            } else {
                s.push(c);
            }
        }
        s
    };
    for heading in ["NAME", "SYNOPSIS", "CNLINK PROC", "CNLINK BUS", "CNLINK BUS LIST", "CNLINK GENERATE", "VERSION"] {
        assert!(plain.lines().any(|l| l.trim() == heading), "no {heading} section:\n{plain}");
    }
    for option in ["--metrics", "--config", "--print-config", "--rcvbuf", "--no-kernel-filter"] {
        assert!(plain.contains(option), "no {option}:\n{plain}");
    }
}

#[test]
fn completions_are_valid_shell() {
    let dir = TempDir::new("completions");
    for (what, shell) in [("complete-bash", "bash"), ("complete-zsh", "zsh"), ("complete-fish", "fish")] {
        let script = generate(what);
        let text = String::from_utf8_lossy(&script);
        assert!(text.contains("cnlink") && text.contains("print-config"), "{what}: {text}");
        let path = dir.0.join(format!("cnlink.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let mut cmd = Command::new(shell);
        cmd.arg("-n").arg(&path);
        let Some(out) = tool("completions_are_valid_shell", cmd) else { continue };
        assert!(out.status.success(), "{shell} -n: {}", self::text(&out));
    }
}

#[test]
fn the_example_config_loads_with_every_commented_setting() {
    let example = repo("dist/cnlink.toml");
    for sub in ["proc", "bus"] {
        let out = cnlink().args([sub, "--print-config", "--config"]).arg(&example).output().unwrap();
        assert!(out.status.success(), "{sub}: {}", text(&out));
    }
    // Every commented `# key = value` line is a valid setting too.
    let all: String = std::fs::read_to_string(&example)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '-')) =>
            {
                rest
            }
            Some(rest) if rest.starts_with('[') => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = TempDir::new("example");
    let file = dir.0.join("all.toml");
    std::fs::write(&file, &all).unwrap();
    assert!(["\n[proc.sink]\n", "\nurl = ", "\n[collect]\n"].iter().all(|t| all.contains(t)), "{all}");
    for sub in [&["proc"][..], &["bus"], &["collect", "nats://127.0.0.1:4222"]] {
        let out = cnlink().args(sub).args(["--print-config", "--config"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{sub:?} with every setting: {}\n{all}", text(&out));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.contains("# file"), "{printed}");
    }
}
