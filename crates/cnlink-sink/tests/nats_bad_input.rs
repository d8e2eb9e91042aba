//! Bad input against real servers: no server, wrong credentials, a stream with other settings, a full spool
//! disk, a malformed message in the stream. Each gives a clear message and never stops the spooling.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cnlink_sink::publish::{Auth, ConnectConfig, PublishConfig, Publisher};
use cnlink_sink::{FsyncPolicy, Identity, Sink, SinkConfig, SpoolOptions, UpstreamCounts};
use common::{collect_all, free_port, server_binary, NatsServer, TempDir};

fn open_sink(dir: &Path) -> Sink {
    let mut config = SinkConfig::new(Identity { host_id: "bad.input".into(), boot_id: "boot".into() }, dir);
    config.spool.fsync = FsyncPolicy::Never;
    Sink::open(config).unwrap().0
}

fn config(servers: &str) -> PublishConfig {
    let mut config = PublishConfig::new(ConnectConfig::parse(servers).unwrap());
    config.connect.connect_timeout = Duration::from_secs(2);
    config.ack_timeout = Duration::from_secs(2);
    config.max_backoff = Duration::from_millis(500);
    config
}

fn submit(sink: &mut Sink, from: u64, count: u64) {
    for n in from..from + count {
        sink.submit("exec", format!("{{\"n\":{n}}}").as_bytes()).unwrap();
    }
    sink.flush().unwrap();
}

#[test]
fn unreachable_server_says_so_keeps_spooling_and_delivers_when_it_comes() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("unreachable");
    let mut sink = open_sink(&tmp.path().join("spool"));
    // A port nobody listens on yet.
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let publisher = Publisher::start(sink.handle(), config(&url)).unwrap();
    let error = publisher.wait_ready(Duration::from_secs(10)).unwrap_err();
    assert!(error.contains("cannot connect to") && error.contains(&url), "{error}");
    submit(&mut sink, 0, 1000);
    assert_eq!(sink.stats().lag_records, 1000, "spooled, waiting");
    // The server comes up on that port: the spool drains.
    let _server = NatsServer::start_on(&binary, &tmp.path().join("store"), port, &[]);
    assert!(publisher.drain(Duration::from_secs(30)), "{:?}", publisher.status());
    publisher.stop();
    let found = collect_all(&url, "CNLINK", Duration::from_secs(30));
    assert_eq!(found.events.len(), 1000);
}

#[test]
fn wrong_token_is_a_clear_error_and_the_right_one_works() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("auth");
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &["--auth".into(), "s3cret".into()]);
    let mut sink = open_sink(&tmp.path().join("spool"));
    let mut wrong = config(&server.url());
    wrong.connect.auth = Auth::Token("wrong".into());
    let publisher = Publisher::start(sink.handle(), wrong).unwrap();
    let error = publisher.wait_ready(Duration::from_secs(10)).unwrap_err();
    assert!(error.to_lowercase().contains("authorization"), "{error}");
    submit(&mut sink, 0, 100);
    assert_eq!(sink.stats().lag_records, 100, "spooled, waiting");
    publisher.stop();

    let mut right = config(&server.url());
    right.connect.auth = Auth::Token("s3cret".into());
    let publisher = Publisher::start(sink.handle(), right).unwrap();
    publisher.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(publisher.drain(Duration::from_secs(30)));
}

#[test]
fn a_stream_with_other_limits_is_kept_with_warnings_and_foreign_subjects_are_refused() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("stream");
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "CNLINK".into(),
            subjects: vec!["cnlink.>".into()],
            max_messages: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "OTHER".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let mut sink = open_sink(&tmp.path().join("spool"));
    submit(&mut sink, 0, 10);
    let publisher = Publisher::start(sink.handle(), config(&url)).unwrap();
    publisher.wait_ready(Duration::from_secs(10)).unwrap();
    let warnings = publisher.status().warnings;
    assert!(warnings.iter().any(|w| w.contains("max_msgs 1000000 (configured -1)")), "{warnings:?}");
    assert!(publisher.drain(Duration::from_secs(30)));
    publisher.stop();

    let mut foreign = config(&url);
    foreign.stream.name = "OTHER".into();
    let mut sink = open_sink(&tmp.path().join("spool2"));
    submit(&mut sink, 0, 10);
    let publisher = Publisher::start(sink.handle(), foreign).unwrap();
    let error = publisher.wait_ready(Duration::from_secs(10)).unwrap_err();
    assert!(error.contains("stream OTHER exists with subjects") && error.contains("refusing"), "{error}");
    assert_eq!(sink.stats().lag_records, 10, "still spooled");
}

#[test]
fn a_malformed_message_in_the_stream_is_counted_never_fatal() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("malformed");
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);
    let mut sink = open_sink(&tmp.path().join("spool"));
    submit(&mut sink, 0, 20);
    sink.write_ledger(Instant::now(), &UpstreamCounts::default(), true).unwrap();
    let publisher = Publisher::start(sink.handle(), config(&server.url())).unwrap();
    assert!(publisher.drain(Duration::from_secs(30)));
    publisher.stop();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(&server.url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for junk in ["not json", "{\"n\":1}", "{\"host_id\":7}"] {
            js.publish("cnlink.x.proc.exec", junk.into()).await.unwrap().await.unwrap();
        }
        js.publish("cnlink.x.proc.ledger", "[]".into()).await.unwrap().await.unwrap();
    });
    let found = collect_all(&server.url(), "CNLINK", Duration::from_secs(30));
    assert_eq!(found.stats.malformed, 4);
    assert_eq!(found.events.len(), 20);
    let report = found.auditor.report();
    assert_eq!(report.malformed, 4);
    assert!(report.is_complete(), "{report:#?}");
}

/// A tmpfs of 256 KiB as the spool's disk; a filler file takes the rest so that writes fail with ENOSPC.
#[test]
fn a_full_spool_disk_is_counted_never_a_crash_and_writing_resumes() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("enospc");
    let mount = tmp.path().join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let why = "cannot mount a tmpfs (needs root): the full-disk test did not run";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIP: {why}");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(&mount);
    let server = NatsServer::start(&binary, &tmp.path().join("store"), &[]);

    let spool = mount.join("spool");
    let mut config = SinkConfig::new(Identity { host_id: "full.disk".into(), boot_id: "boot".into() }, &spool);
    config.spool = SpoolOptions {
        segment_bytes: 16 << 10,
        max_bytes: 8 << 20, // larger than the disk: the disk fills first
        fsync: FsyncPolicy::Never,
        buffer_bytes: 4 << 10,
        ..SpoolOptions::new(&spool)
    };
    let (mut sink, _) = Sink::open(config).unwrap();
    // The publisher is not started yet: nothing is acknowledged, so nothing is freed.
    let filler = mount.join("filler");
    let _ =
        Command::new("dd").args(["if=/dev/zero", "bs=4k", "count=40"]).arg(format!("of={}", filler.display())).status();
    let mut stored = 0;
    let mut failed_flushes = 0;
    for n in 0..5000u64 {
        sink.submit("exec", format!("{{\"n\":{n},\"pad\":\"{:0>100}\"}}", n).as_bytes()).unwrap();
        if n % 20 == 19 {
            match sink.flush() {
                Ok(()) => stored = sink.stats().committed_seq,
                Err(error) => {
                    assert!(error.is_disk_full(), "{error}");
                    failed_flushes += 1;
                }
            }
        }
    }
    let dropped = sink.stats().state.write_dropped;
    assert!(failed_flushes > 0 && dropped > 0, "the disk filled: {:?}", sink.stats());
    assert!(sink.stats().last_error.unwrap_or_default().contains("No space left"));
    // Space returns: writing goes on.
    std::fs::remove_file(&filler).unwrap();
    let before = sink.stats().committed_seq;
    for n in 5000..5100u64 {
        sink.submit("exec", format!("{{\"n\":{n}}}").as_bytes()).unwrap();
    }
    sink.flush().expect("writes again once space returns");
    assert_eq!(sink.stats().committed_seq, before + 100);
    sink.write_ledger(Instant::now(), &UpstreamCounts::default(), true).unwrap();
    let publisher = Publisher::start(sink.handle(), config_for(&server.url())).unwrap();
    assert!(publisher.drain(Duration::from_secs(30)), "{:?}", publisher.status());
    publisher.stop();

    let found = collect_all(&server.url(), "CNLINK", Duration::from_secs(30));
    let report = found.auditor.report();
    assert!(report.is_complete(), "dropped records use no numbers: {report:#?}");
    let ledger = found.ledgers.iter().max_by_key(|l| l.sink_seq).unwrap();
    assert_eq!(ledger.write_dropped, dropped);
    assert_eq!(report.boots[0].lost.write_dropped, dropped);
    assert_eq!(found.events.len() as u64 + dropped, 5100);
    assert!(stored > 0);
}

fn config_for(url: &str) -> PublishConfig {
    config(url)
}

#[test]
fn user_and_password_wrong_is_a_clear_error_right_works() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("userpass");
    let server = NatsServer::start(
        &binary,
        &tmp.path().join("store"),
        &["--user".into(), "ship".into(), "--pass".into(), "pw".into()],
    );
    let mut sink = open_sink(&tmp.path().join("spool"));
    submit(&mut sink, 0, 50);
    let mut wrong = config(&server.url());
    wrong.connect.auth = Auth::UserPassword { user: "ship".into(), password: "nope".into() };
    let publisher = Publisher::start(sink.handle(), wrong).unwrap();
    let error = publisher.wait_ready(Duration::from_secs(10)).unwrap_err();
    assert!(error.to_lowercase().contains("authorization"), "{error}");
    publisher.stop();
    let mut right = config(&server.url());
    right.connect.auth = Auth::UserPassword { user: "ship".into(), password: "pw".into() };
    let publisher = Publisher::start(sink.handle(), right).unwrap();
    publisher.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(publisher.drain(Duration::from_secs(30)));
}

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate with `openssl`.
fn make_certs(dir: &Path) -> bool {
    let run =
        |args: &[&str]| Command::new("openssl").current_dir(dir).args(args).output().is_ok_and(|o| o.status.success());
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let key = |name: &str, cn: &str| {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ])
    };
    let sign = |name: &str| {
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
        ])
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=cnlink test CA",
    ]) && key("server", "127.0.0.1")
        && sign("server")
        && key("client", "cnlink-client")
        && sign("client")
}

#[test]
fn tls_with_a_private_ca_and_a_client_certificate() {
    let Some(binary) = server_binary() else { return };
    let tmp = TempDir::new("tls");
    if !make_certs(tmp.path()) {
        let why = "openssl could not make test certificates: the TLS test did not run";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIP: {why}");
        return;
    }
    let file = |name: &str| tmp.path().join(name);
    let server = NatsServer::start(
        &binary,
        &tmp.path().join("store"),
        &[
            "--tlsverify".into(),
            "--tlscert".into(),
            file("server.pem").display().to_string(),
            "--tlskey".into(),
            file("server.key").display().to_string(),
            "--tlscacert".into(),
            file("ca.pem").display().to_string(),
        ],
    );
    let url = format!("tls://127.0.0.1:{}", server.port);
    let mut sink = open_sink(&tmp.path().join("spool"));
    submit(&mut sink, 0, 50);

    // Without the client certificate the server refuses: a clear error, and the records stay spooled.
    let mut no_client_cert = config(&url);
    no_client_cert.connect.tls.ca = Some(file("ca.pem"));
    let publisher = Publisher::start(sink.handle(), no_client_cert).unwrap();
    let error = publisher.wait_ready(Duration::from_secs(10)).unwrap_err();
    assert!(error.contains("cannot connect to") && error.contains(&url), "{error}");
    publisher.stop();
    assert_eq!(sink.stats().lag_records, 50);

    let mut tls = config(&url);
    tls.connect.tls.ca = Some(file("ca.pem"));
    tls.connect.tls.client_cert = Some((file("client.pem"), file("client.key")));
    let publisher = Publisher::start(sink.handle(), tls).unwrap();
    publisher.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(publisher.drain(Duration::from_secs(30)), "{:?}", publisher.status());
    publisher.stop();
}
