use cnlink_procmon::{LossCause, LostEvents};

use super::*;
use crate::monitor::json::{self, Fragments, JsonWriter};
use crate::monitor::testkit::{exit, handle, machine, process, TICK};
use crate::sink::output::with_offset;

/// 2026-11-28T12:00:00Z minus one tick.
const OFFSET: i64 = 1_795_867_200_000_000_000 - TICK as i64;

/// The records of a shell's child: the shell's exec, the fork, the child's exec (ESC in an argument), its
/// rename to a name with ESC, its exit with 3, and a loss.
fn story() -> Vec<MonitorItem> {
    let (mut t, mut fake) = machine();
    let mut items = Vec::new();
    items.push(handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 }));
    items.push(handle(
        &mut t,
        &mut fake,
        2 * TICK,
        EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 200, child_tgid: 200 },
    ));
    fake.0.insert(200, process(200, 100, 2, "sleep", &[&b"sleep"[..], b"\x1b[2J"], 1000));
    items.push(handle(&mut t, &mut fake, 2 * TICK + 5, EventData::Exec { process_pid: 200, process_tgid: 200 }));
    let mut comm = [0u8; 16];
    comm[..4].copy_from_slice(b"e\x1b]x");
    items.push(handle(&mut t, &mut fake, 3 * TICK, EventData::Comm { process_pid: 200, process_tgid: 200, comm }));
    items.push(handle(&mut t, &mut fake, 4 * TICK, exit(200, 100, 3 << 8)));
    let mut items: Vec<MonitorItem> = items.into_iter().map(MonitorItem::Record).collect();
    items.push(MonitorItem::Lost(LostEvents::exact(LossCause::SeqGap, 4, 5 * TICK)));
    items
}

/// The item as `cnlink proc --sink` publishes it for `host`.
fn published(item: &MonitorItem, host: &str, seq: u64) -> Vec<u8> {
    let mut w = JsonWriter::new();
    match item {
        MonitorItem::Record(r) => json::record(&mut w, r, &mut Fragments::default()),
        MonitorItem::Lost(l) => json::lost(&mut w, l),
    }
    let mut with = Vec::new();
    with_offset(&mut with, w.bytes(), i128::from(OFFSET));
    let (h, b) = (serde_json::to_string(host).unwrap(), serde_json::to_string(&format!("boot-{host}")).unwrap());
    let mut line = format!("{{\"host_id\":{h},\"boot_id\":{b},\"sink_seq\":{seq},").into_bytes();
    line.extend_from_slice(&with[1..]);
    line
}

fn look(format: FleetFormat) -> FleetLook {
    FleetLook { format, style: NameStyle::default(), columns: Columns::default(), pid_width: 5, own_offset_ns: 0 }
}

fn shown(format: FleetFormat, lines: &[(&str, Vec<u8>)]) -> String {
    let mut fleet = FleetView::new(look(format));
    let mut out = Vec::new();
    fleet.header(&mut out);
    for (host, payload) in lines {
        fleet.event(&mut out, host, &format!("boot-{host}"), payload).unwrap();
    }
    assert!(fleet.notes.is_empty(), "{:?}", fleet.notes);
    String::from_utf8(out).unwrap()
}

/// What `cnlink proc`'s text writer prints for the same records, in this machine's time zone.
fn proc_text(items: &[MonitorItem]) -> String {
    let zone = chrono::Local.timestamp_nanos(OFFSET).offset().local_minus_utc();
    let env = TextEnv { pid_width: 5, clock: fixed_clock(OFFSET, zone), user_name: Box::new(|_| None) };
    let human = Human::new(NameStyle::default(), Columns::default(), env);
    let mut out = Vec::new();
    human.header(&mut out);
    for item in items {
        match item {
            MonitorItem::Record(r) => human.record(&mut out, r),
            MonitorItem::Lost(l) => human.lost(&mut out, l),
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn one_host_prints_what_cnlink_proc_prints_escaped() {
    let items = story();
    let lines: Vec<(&str, Vec<u8>)> =
        items.iter().enumerate().map(|(i, it)| ("web1", published(it, "web1", i as u64))).collect();
    let text = shown(FleetFormat::Text, &lines);
    assert_eq!(text, proc_text(&items));
    // The fork names the parent's program, the exit its code; nothing reaches the terminal unescaped.
    assert!(text.lines().any(|l| l.contains(" fork ") && l.contains("parent") && l.ends_with("bash")), "{text}");
    assert!(text.lines().any(|l| l.contains(" exit ") && l.contains(" 3 ") && l.contains("0.020s")), "{text}");
    assert!(text.contains("sleep \\x1b[2J") && text.contains("(comm sleep -> e\\x1b]x)"), "{text}");
    assert!(!text.contains('\x1b'));
}

#[test]
fn two_hosts_get_a_host_column_and_trees_of_their_own() {
    let items = story();
    // The same pids on two hosts, interleaved.
    let mut lines = Vec::new();
    for (i, it) in items.iter().enumerate() {
        lines.push(("web1", published(it, "web1", i as u64)));
        lines.push(("db\x1b2", published(it, "db\x1b2", i as u64)));
    }
    let text = shown(FleetFormat::Tree, &lines);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("Time ") && rows[1].contains(" exec "), "one host: no column\n{text}");
    assert!(!rows[1].starts_with("web1"), "{text}");
    assert!(rows[2].starts_with("Host") && rows[2].contains("Time") && rows[2].ends_with("Process tree"), "{text}");
    assert!(!text.contains('\x1b'), "the host id is escaped too");
    // After the second host is seen, every line says its host; each host's child sits under its own shell.
    let after: Vec<&str> = rows[3..].to_vec();
    assert!(after.iter().all(|l| l.starts_with("web1 ") || l.starts_with("db\\x1b2 ")), "{text}");
    for host in ["web1 ", "db\\x1b2 "] {
        let exec = after.iter().find(|l| l.starts_with(host) && l.contains(" exec ") && l.contains("sleep"));
        assert!(exec.is_some_and(|l| l.contains("└ sleep")), "{host}: {text}");
        let exit = after.iter().find(|l| l.starts_with(host) && l.contains(" exit "));
        assert!(exit.is_some_and(|l| l.contains(" 3 ") && l.contains("└ sleep")), "{host}: {text}");
    }
}

#[test]
fn ecs_documents_name_their_host_and_its_time() {
    let items = story();
    let lines = vec![("web1", published(&items[2], "web1", 1)), ("db2", published(&items[4], "db2", 1))];
    let text = shown(FleetFormat::Ecs, &lines);
    let docs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((docs[0]["host"]["id"].as_str(), docs[1]["host"]["id"].as_str()), (Some("web1"), Some("db2")));
    assert_eq!(docs[0]["host"]["boot"]["id"], "boot-web1");
    assert_eq!(docs[0]["@timestamp"], "2026-11-28T12:00:00.010000005Z");
    assert_eq!(
        (docs[0]["process"]["pid"].as_i64(), docs[0]["process"]["args"][0].as_str()),
        (Some(200), Some("sleep"))
    );
    assert_eq!(docs[1]["process"]["exit_code"], 3);
    // The same event id `cnlink proc --format ecs` gives it on its host.
    let MonitorItem::Record(r) = &items[2] else { panic!() };
    let id = cnlink_procmon::ecs::event_id(
        &HostIdentity::new("web1", "boot-web1"),
        r.event.cpu,
        r.event.seq,
        r.event.timestamp_ns,
    );
    assert_eq!(docs[0]["event"]["id"], id.as_str());
}

#[test]
fn events_without_an_offset_take_this_machines_and_say_so() {
    let items = story();
    let mut w = JsonWriter::new();
    let MonitorItem::Record(r) = &items[0] else { panic!() };
    json::record(&mut w, r, &mut Fragments::default());
    let mut fleet = FleetView::new(FleetLook { own_offset_ns: OFFSET, ..look(FleetFormat::Ecs) });
    let mut out = Vec::new();
    fleet.event(&mut out, "old", "b", w.bytes()).unwrap();
    fleet.event(&mut out, "old", "b", w.bytes()).unwrap();
    assert_eq!(fleet.notes.len(), 1, "said once: {:?}", fleet.notes);
    let doc: serde_json::Value = serde_json::from_slice(out.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(doc["@timestamp"], "2026-11-28T12:00:00.000000000Z");
    assert!(fleet.event(&mut out, "old", "b", b"{\"event\":\"exec\"}").is_err());
    assert!(fleet.event(&mut out, "old", "b", b"not json").is_err());
}
