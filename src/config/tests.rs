//! The loader against the real flags of `cnlink proc` and `cnlink bus`.

use std::io::Write as _;

use clap::CommandFactory;

use super::*;
use crate::Cli;

/// A config file in a temporary directory, removed on drop.
struct File {
    path: PathBuf,
}

impl File {
    fn new(text: &str) -> File {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "cnlink-config-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
        File { path }
    }
}

impl Drop for File {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn run(args: &[&str], text: &str) -> (File, Result<Parsed, ParseError>) {
    let f = File::new(text);
    let mut argv: Vec<OsString> = vec!["cnlink".into()];
    for a in args {
        argv.push(a.replace("FILE", &f.path.to_string_lossy()).into());
    }
    let r = parse(Cli::command(), argv);
    (f, r)
}

fn matches(args: &[&str], text: &str) -> ArgMatches {
    match run(args, text).1 {
        Ok(Parsed::Run(m)) => m,
        Ok(Parsed::Print(p)) => panic!("printed:\n{p}"),
        Err(ParseError::Cli(e)) => panic!("{e}"),
        Err(ParseError::Config(e)) => panic!("{e:#}"),
    }
}

fn config_error(args: &[&str], text: &str) -> (String, String) {
    let (f, r) = run(args, text);
    match r {
        Err(ParseError::Config(e)) => (format!("{e:#}"), f.path.display().to_string()),
        Ok(_) => panic!("accepted"),
        Err(ParseError::Cli(e)) => panic!("a command-line error: {e}"),
    }
}

fn printed(args: &[&str], text: &str) -> String {
    match run(args, text).1 {
        Ok(Parsed::Print(p)) => p,
        other => panic!("{other:?}"),
    }
}

fn sub<'a>(m: &'a ArgMatches, name: &str) -> &'a ArgMatches {
    m.subcommand_matches(name).unwrap()
}

#[test]
fn proc_flags_come_from_the_file_and_the_command_line_wins() {
    let text = "[proc]\nformat = \"json\"\nrcvbuf = \"64M\"\nqueue = 4096\nquiet = true\nname = [\"sh*\", \"bash\"]\n\
                pid = [1, 2]\nbatch-latency = \"1ms\"\nmetrics = \"127.0.0.1:9464\"\n";
    let m = matches(&["proc", "--config", "FILE", "--queue", "2048"], text);
    let p = sub(&m, "proc");
    assert_eq!(p.get_one::<usize>("rcvbuf"), Some(&(64 << 20)));
    assert_eq!(p.get_one::<usize>("queue"), Some(&2048), "the command line wins");
    assert!(p.get_flag("quiet"));
    assert_eq!(p.get_many::<String>("names").unwrap().collect::<Vec<_>>(), ["sh*", "bash"]);
    assert_eq!(p.get_many::<i32>("pids").unwrap().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(p.get_one::<std::net::SocketAddr>("metrics").unwrap().port(), 9464);
    // The typed arguments come out as the subcommand's struct.
    let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
    assert!(matches!(cli.command, crate::Command::Proc(_)));
}

#[test]
fn bus_flags_and_groups() {
    let text = "[bus]\nport = \"0x1234\"\necho = [\"14.0x456\", \"15.1\"]\nverbose = true\n";
    let m = matches(&["bus", "--config", "FILE"], text);
    let b = sub(&m, "bus");
    assert_eq!(b.get_one::<u32>("port"), Some(&0x1234));
    assert_eq!(b.get_many::<cnlink::wire::CbId>("echo").unwrap().count(), 2);
    assert!(b.get_flag("verbose"));
    // Only the section of the running subcommand is applied; the other is checked.
    let both = "[proc]\nquiet = true\n[bus]\nqueue = 7\n";
    let m = matches(&["bus", "--config", "FILE"], both);
    assert_eq!(sub(&m, "bus").get_one::<usize>("queue"), Some(&7));
}

#[test]
fn a_nested_table_is_a_flag_prefix() {
    // `[proc.batch] latency` is `--batch-latency`, `[bus.print]`... only where such flags exist.
    let m = matches(&["proc", "--config", "FILE"], "[proc.batch]\nlatency = \"2ms\"\n[proc.ack]\ntimeout = 3\n");
    let p = sub(&m, "proc");
    assert_eq!(p.get_one::<std::time::Duration>("batch_latency"), Some(&std::time::Duration::from_millis(2)));
    assert_eq!(p.get_one::<std::time::Duration>("ack_timeout"), Some(&std::time::Duration::from_secs(3)));
}

#[test]
fn the_sink_table_sets_the_sink_flags() {
    let text = "[proc]\nformat = \"json\"\n[proc.sink]\nurl = \"nats://127.0.0.1:4222,127.0.0.1:4223\"\n\
                stream = \"FLEET\"\nspool = \"/var/tmp/spool\"\nspool-max = \"64M\"\nfsync = \"always\"\n\
                user = \"cnlink\"\npassword = \"s3cret\"\nreplicas = 3\nledger-interval = \"2s\"\n";
    let m = matches(&["proc", "--config", "FILE", "--sink-window", "64"], text);
    let p = sub(&m, "proc");
    assert_eq!(p.get_one::<String>("sink_url").unwrap(), "nats://127.0.0.1:4222,127.0.0.1:4223");
    assert_eq!(p.get_one::<String>("sink_stream").unwrap(), "FLEET");
    assert_eq!(p.get_one::<usize>("sink_spool_max"), Some(&(64 << 20)));
    assert_eq!(p.get_one::<cnlink_sink::FsyncPolicy>("sink_fsync"), Some(&cnlink_sink::FsyncPolicy::Always));
    assert_eq!(p.get_one::<String>("nats_password").unwrap(), "s3cret");
    assert_eq!(p.get_one::<u8>("sink_replicas"), Some(&3));
    assert_eq!(p.get_one::<usize>("sink_window"), Some(&64), "the command line wins");
    // The flat spelling and the table's name one flag: both is an error.
    let (e, _) = config_error(
        &["proc", "--config", "FILE"],
        "[proc]\nsink-url = \"nats://h:1\"\n[proc.sink]\nurl = \"nats://h:2\"\n",
    );
    assert!(e.contains(":4:1: proc.sink.url: --sink is already set by proc.sink-url on line 2"), "{e}");
    let (e, _) =
        config_error(&["proc", "--config", "FILE"], "[proc.sink]\nurl = \"nats://h:1\"\nfsync = \"sometimes\"\n");
    assert!(e.contains("proc.sink.fsync: invalid value 'sometimes'"), "{e}");
    // What --print-config prints loads again.
    let out = printed(&["proc", "--config", "FILE", "--print-config"], text);
    assert!(out.contains("sink = \"nats://127.0.0.1:4222,127.0.0.1:4223\"  # file\n"), "{out}");
    assert!(out.contains("sink-prefix = \"cnlink\"  # default\n"), "{out}");
    assert!(out.contains("sink-password = \"s3cret\"  # file\n"), "{out}");
    let again = printed(&["proc", "--config", "FILE", "--print-config"], &out);
    let strip = |s: &str| s.lines().skip(1).map(|l| l.split("  #").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&again), strip(&out));
}

#[test]
fn collect_has_a_section_and_the_short_credential_names() {
    let text = "[collect]\nstream = \"FLEET\"\ndurable = \"central\"\ntoken = \"t0k\"\naudit = true\n";
    let m = matches(&["collect", "--config", "FILE", "nats://127.0.0.1:4222"], text);
    let c = sub(&m, "collect");
    assert_eq!(c.get_one::<String>("stream").unwrap(), "FLEET");
    assert_eq!(c.get_one::<String>("nats_token").unwrap(), "t0k");
    assert!(c.get_flag("audit"));
    let (e, _) = config_error(&["collect", "--config", "FILE", "nats://h:1"], "[collect]\nsink-token = \"x\"\n");
    assert!(e.contains("collect.sink-token: unknown key"), "{e}");
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let (e, path) = config_error(&["proc", "--config", "FILE"], "[proc]\nquiet = true\n\nrcvbuff = \"1M\"\n");
    assert_eq!(e, format!("{path}:4:1: proc.rcvbuff: unknown key: `cnlink proc` has no --rcvbuff"));
    let (e, path) = config_error(&["proc", "--config", "FILE"], "[proc.sink]\nurll = \"nats://127.0.0.1:4222\"\n");
    assert_eq!(e, format!("{path}:2:1: proc.sink.urll: unknown key: `cnlink proc` has no --sink-urll"));
    let (e, _) = config_error(&["proc", "--config", "FILE"], "[list]\nx = 1\n");
    assert!(e.contains(":1:2: list: unknown section (known: proc, collect, record, replay, bus)"), "{e}");
    // The file's own name is not a key.
    let (e, _) = config_error(&["proc", "--config", "FILE"], "[proc]\nconfig = \"/etc/x\"\n");
    assert!(e.contains("proc.config: unknown key"), "{e}");
    // A section that is not the running subcommand's is checked too.
    let (e, _) = config_error(&["proc", "--config", "FILE"], "[bus]\nprot = 1\n");
    assert!(e.contains(":2:1: bus.prot: unknown key"), "{e}");
}

#[test]
fn wrong_types_and_values_are_reported_by_the_flags_own_parser() {
    let cases = [
        ("[proc]\nquiet = \"yes\"\n", "2:1: proc.quiet: expected a boolean, found a string"),
        ("[proc]\nrcvbuf = \"lots\"\n", "2:1: proc.rcvbuf: invalid value 'lots' for '--rcvbuf <BYTES>'"),
        ("[proc]\nformat = \"xml\"\n", "2:1: proc.format: invalid value 'xml' for '--format <FORMAT>'"),
        ("[proc]\nqueue = -5\n", "2:1: proc.queue: invalid value '-5' for '--queue <EVENTS>'"),
        ("[proc]\npgrp = [1, 2]\n", "2:1: proc.pgrp: --pgrp takes one value, not an array"),
        ("[bus]\nport = \"zz\"\n", "2:1: bus.port: invalid value 'zz' for '--port <PORT>'"),
        ("[proc]\nquiet = true\nquiet = false\n", "3:1: "),
        (
            "[proc]\nbatch-latency = \"1ms\"\n[proc.batch]\nlatency = \"2ms\"\n",
            "4:1: proc.batch.latency: --batch-latency is already set by proc.batch-latency on line 2",
        ),
    ];
    for (text, want) in cases {
        let (e, path) = config_error(&["proc", "--config", "FILE"], text);
        assert!(e.starts_with(&format!("{path}:{want}")), "{text:?}: got {e:?}, want {want:?}");
    }
    let (e, _) = config_error(&["proc", "--config", "FILE"], "[proc]\nformat = \"xml\"\n");
    assert!(e.contains("[possible values: text, json, ecs]"), "{e}");
}

#[test]
fn contradictions_within_the_file_name_both_keys() {
    let (e, path) = config_error(&["proc", "--config", "FILE"], "[proc]\nevents = \"exec\"\nall = true\n");
    assert!(
        e.starts_with(&format!("{path}:2:1: proc.events: the argument '--events <LIST>' cannot be used with")),
        "{e}"
    );
    assert!(e.contains("proc.all (line 3)"), "{e}");
    // A requirement the file leaves unmet.
    let (e, _) = config_error(&["proc", "--config", "FILE"], "[proc]\ndescendants = true\n");
    assert!(e.contains(":2:1: proc.descendants: "), "{e}");
}

#[test]
fn a_command_line_flag_beats_a_conflicting_key() {
    let m = matches(&["proc", "--config", "FILE", "-E"], "[proc]\nevents = \"exec\"\n");
    let p = sub(&m, "proc");
    assert!(p.get_flag("all"));
    assert_eq!(p.get_one::<String>("events"), None);
}

#[test]
fn the_merged_options_print_as_toml_that_loads_again() {
    let text = "[proc]\nformat = \"json\"\nrcvbuf = \"64M\"\nname = [\"a b\", \"c\\\"d\"]\n";
    let out = printed(&["proc", "--config", "FILE", "--print-config", "--queue", "4096"], text);
    assert!(out.contains("[proc]\n"), "{out}");
    assert!(out.contains("format = \"json\"  # file\n"), "{out}");
    assert!(out.contains("queue = 4096  # command line\n"), "{out}");
    assert!(out.contains("cache-max = 262144  # default\n"), "{out}");
    assert!(
        out.contains("name = [\"a b\", 'c\"d']  # file\n") || out.contains("name = [\"a b\", \"c\\\"d\"]  # file\n"),
        "{out}"
    );
    assert!(out.contains("# events =  # not set\n"), "{out}");
    assert!(!out.contains("print-config"), "{out}");
    // What was printed is a valid file that gives the same options.
    let again = printed(&["proc", "--config", "FILE", "--print-config"], &out);
    let strip = |s: &str| s.lines().skip(1).map(|l| l.split("  #").next().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(strip(&again), strip(&out));
    // Without a file: the command line and the defaults.
    let bare = printed(&["bus", "--print-config", "--port", "77"], "");
    assert!(bare.contains("[bus]\nport = 77  # command line\n"), "{bare}");
}

#[test]
fn syntax_errors_and_missing_files() {
    let (e, path) = config_error(&["proc", "--config", "FILE"], "[proc]\nquiet = \n");
    assert!(e.starts_with(&format!("{path}:2:")), "{e}");
    let r =
        parse(Cli::command(), ["cnlink", "proc", "--config", "/nonexistent/cnlink.toml"].map(OsString::from).to_vec());
    match r {
        Err(ParseError::Config(e)) => assert!(format!("{e:#}").contains("reading /nonexistent/cnlink.toml"), "{e:#}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn positional_arguments_and_subcommands_without_config_are_untouched() {
    let m = matches(&["bus", "list", "--long"], "");
    assert!(sub(sub(&m, "bus"), "list").get_flag("long"));
    let m = matches(&["decode", "--", "01 02"], "");
    assert!(m.subcommand_matches("decode").is_some());
}
