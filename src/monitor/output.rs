//! Where records and losses go: the [`Output`] trait, the terminal outputs (text, the tree view, native JSON,
//! ECS), and [`Outputs`], which hands each record to every output, with its native JSON made once for all that
//! want it (a sink publishes exactly those bytes).

use std::io::{self, Write};

use cnlink_procmon::ecs::EcsWriter;
use cnlink_procmon::{HostIdentity, LostEvents, ProcRecord, ProcessTable};

use super::clock::SharedClock;
use super::human::{Columns, Human, NameStyle, TextEnv};
use super::json::{self, Fragments, JsonWriter};
use super::tree::TreeView;

/// A consumer of the monitor's records and losses.
pub(crate) trait Output {
    /// Whether this output wants the native JSON of each record and loss (made once for all outputs).
    fn wants_json(&self) -> bool {
        false
    }

    /// A batch begins.
    fn batch_start(&mut self) {}

    /// One record; `json` is its native JSON line when some output wants it, else empty.
    fn record(&mut self, rec: &ProcRecord, json: &[u8]) -> io::Result<()>;

    /// One record, with the monitor's process table as it stands after the batch (`None` where there is
    /// none), for outputs that look beyond the record; by default [`Output::record`].
    fn record_with_table(&mut self, rec: &ProcRecord, json: &[u8], table: Option<&ProcessTable>) -> io::Result<()> {
        let _ = table;
        self.record(rec, json)
    }

    /// One loss; `json` as for records.
    fn lost(&mut self, lost: &LostEvents, json: &[u8]) -> io::Result<()>;

    /// A batch ended: a moment to flush. `json` is the native JSON of the whole batch, every line passed to
    /// [`Output::record`] and [`Output::lost`] in order (empty when no output wants it).
    fn batch_end(&mut self, json: &[u8]) -> io::Result<()>;
}

/// Output for a terminal or a pipe: lines gathered per batch, written at its end (or after every line).
struct Terminal<W: Write> {
    out: W,
    buf: Vec<u8>,
    line_buffered: bool,
}

impl<W: Write> Terminal<W> {
    fn line_done(&mut self) -> io::Result<()> {
        if self.line_buffered || self.buf.len() >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.flush()
    }
}

/// `--format text`.
struct TextOutput<W: Write> {
    term: Terminal<W>,
    human: Human,
}

impl<W: Write> Output for TextOutput<W> {
    fn record(&mut self, rec: &ProcRecord, _: &[u8]) -> io::Result<()> {
        self.human.record(&mut self.term.buf, rec);
        self.term.line_done()
    }

    fn lost(&mut self, lost: &LostEvents, _: &[u8]) -> io::Result<()> {
        self.human.lost(&mut self.term.buf, lost);
        self.term.line_done()
    }

    fn batch_end(&mut self, _: &[u8]) -> io::Result<()> {
        self.term.flush()
    }
}

/// `--format json`: the native JSON.
struct JsonOutput<W: Write> {
    term: Terminal<W>,
}

impl<W: Write> Output for JsonOutput<W> {
    fn wants_json(&self) -> bool {
        true
    }

    fn record(&mut self, _: &ProcRecord, json: &[u8]) -> io::Result<()> {
        self.line(json)
    }

    fn lost(&mut self, _: &LostEvents, json: &[u8]) -> io::Result<()> {
        self.line(json)
    }

    /// The batch's lines in one write (already written one by one when line-buffered).
    fn batch_end(&mut self, json: &[u8]) -> io::Result<()> {
        if !self.term.line_buffered {
            self.term.out.write_all(json)?;
        }
        self.term.flush()
    }
}

impl<W: Write> JsonOutput<W> {
    fn line(&mut self, json: &[u8]) -> io::Result<()> {
        if self.term.line_buffered {
            self.term.out.write_all(json)?;
            self.term.out.flush()?;
        }
        Ok(())
    }
}

/// `--tree`: the text columns, each process indented under its parent.
struct TreeOutput<W: Write> {
    term: Terminal<W>,
    tree: TreeView,
}

impl<W: Write> Output for TreeOutput<W> {
    fn record(&mut self, rec: &ProcRecord, json: &[u8]) -> io::Result<()> {
        self.record_with_table(rec, json, None)
    }

    fn record_with_table(&mut self, rec: &ProcRecord, _: &[u8], table: Option<&ProcessTable>) -> io::Result<()> {
        self.tree.event(&mut self.term.buf, rec, table);
        self.tree.forget(rec);
        self.term.line_done()
    }

    fn lost(&mut self, lost: &LostEvents, _: &[u8]) -> io::Result<()> {
        self.tree.lost(&mut self.term.buf, lost);
        self.term.line_done()
    }

    fn batch_end(&mut self, _: &[u8]) -> io::Result<()> {
        self.term.flush()
    }
}

/// `--format ecs`: Elastic Common Schema documents.
struct EcsOutput<W: Write> {
    term: Terminal<W>,
    ecs: EcsWriter,
    clock: SharedClock,
}

impl<W: Write> EcsOutput<W> {
    fn line_done(&mut self) -> io::Result<()> {
        self.term.buf.extend_from_slice(self.ecs.bytes());
        self.ecs.clear();
        self.term.line_done()
    }
}

impl<W: Write> Output for EcsOutput<W> {
    fn record(&mut self, rec: &ProcRecord, _: &[u8]) -> io::Result<()> {
        self.ecs.set_realtime_offset(self.clock.borrow().utc_offset_ns(rec.event.timestamp_ns));
        self.ecs.record(rec);
        self.line_done()
    }

    fn lost(&mut self, lost: &LostEvents, _: &[u8]) -> io::Result<()> {
        self.ecs.set_realtime_offset(self.clock.borrow().utc_offset_ns(lost.timestamp_ns));
        self.ecs.loss(lost);
        self.line_done()
    }

    fn batch_end(&mut self, _: &[u8]) -> io::Result<()> {
        self.term.flush()
    }
}

/// How the terminal output looks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TerminalStyle {
    pub(crate) style: NameStyle,
    pub(crate) columns: Columns,
    pub(crate) line_buffered: bool,
}

/// The host ECS documents name.
#[derive(Debug, Clone)]
pub(crate) struct EcsHost {
    /// Its machine id and boot id (those the entity ids derive from).
    pub(crate) identity: HostIdentity,
    /// Its name (`uname -n`; a replay: the recorded one).
    pub(crate) name: String,
}

/// What the terminal shows.
#[derive(Debug, Clone)]
pub(crate) enum View {
    /// Text in forkstat's columns.
    Text,
    /// The text columns as a tree (`--tree`).
    Tree,
    /// The native JSON (docs/json.md).
    Json,
    /// ECS documents (docs/ecs.md) about this host.
    Ecs(EcsHost),
}

/// The terminal output of `view` on `out`, with its header (text, tree) already written.
pub(crate) fn terminal<W: Write + 'static>(
    view: View,
    look: TerminalStyle,
    env: TextEnv,
    mut out: W,
) -> io::Result<Box<dyn Output>> {
    let term = |out| Terminal { out, buf: Vec::with_capacity(1 << 16), line_buffered: look.line_buffered };
    let mut header = Vec::new();
    let write_header = |out: &mut W, header: &[u8]| out.write_all(header).and_then(|()| out.flush());
    Ok(match view {
        View::Text => {
            let human = Human::new(look.style, look.columns, env);
            human.header(&mut header);
            write_header(&mut out, &header)?;
            Box::new(TextOutput { term: term(out), human })
        }
        View::Tree => {
            let tree = TreeView::new(look.style, look.columns, env);
            tree.header(&mut header);
            write_header(&mut out, &header)?;
            Box::new(TreeOutput { term: term(out), tree })
        }
        View::Json => Box::new(JsonOutput { term: term(out) }),
        View::Ecs(host) => {
            let ecs = EcsWriter::new(&host.identity).host_name(&host.name);
            Box::new(EcsOutput { term: term(out), ecs, clock: env.clock })
        }
    })
}

/// The most bytes of lines kept before they are written.
const BATCH_BYTES: usize = 256 << 10;

/// Every output, and the native JSON they share: the lines of the batch, made once.
#[derive(Default)]
pub(crate) struct Outputs {
    list: Vec<Box<dyn Output>>,
    json: JsonWriter,
    frags: Fragments,
    want_json: bool,
}

impl Outputs {
    /// Adds an output.
    pub(crate) fn push(&mut self, o: Box<dyn Output>) {
        self.want_json |= o.wants_json();
        self.list.push(o);
    }

    pub(crate) fn batch_start(&mut self) {
        self.json.clear();
        for o in &mut self.list {
            o.batch_start();
        }
    }

    /// One record to every output; `table` is the monitor's process table after the batch, if there is one.
    pub(crate) fn record(&mut self, rec: &ProcRecord, table: Option<&ProcessTable>) -> io::Result<()> {
        self.bound()?;
        let start = self.json.bytes().len();
        if self.want_json {
            json::record(&mut self.json, rec, &mut self.frags);
        }
        let line = &self.json.bytes()[start..];
        for o in &mut self.list {
            o.record_with_table(rec, line, table)?;
        }
        Ok(())
    }

    pub(crate) fn lost(&mut self, l: &LostEvents) -> io::Result<()> {
        self.bound()?;
        let start = self.json.bytes().len();
        if self.want_json {
            json::lost(&mut self.json, l);
        }
        let line = &self.json.bytes()[start..];
        for o in &mut self.list {
            o.lost(l, line)?;
        }
        Ok(())
    }

    /// A long batch is written out in parts, so that its lines never take more than [`BATCH_BYTES`].
    fn bound(&mut self) -> io::Result<()> {
        if self.json.bytes().len() >= BATCH_BYTES {
            self.batch_end()?;
            self.json.clear();
        }
        Ok(())
    }

    pub(crate) fn batch_end(&mut self) -> io::Result<()> {
        let json = self.json.bytes();
        for o in &mut self.list {
            o.batch_end(json)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use cnlink::wire::EventData;
    use cnlink_procmon::{LossCause, LostEvents};

    use super::*;
    use crate::monitor::clock::LocalClock;
    use crate::monitor::human::TextEnv;
    use crate::monitor::testkit::{handle, machine, TICK};

    /// A writer whose bytes the test can see, counting writes.
    #[derive(Clone, Default)]
    struct Shared(Rc<RefCell<(Vec<u8>, usize)>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut s = self.0.borrow_mut();
            s.0.extend_from_slice(b);
            s.1 += 1;
            Ok(b.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn env() -> TextEnv {
        TextEnv { pid_width: 5, clock: LocalClock::fixed(0, 0).shared(), user_name: Box::new(|_| None) }
    }

    fn outputs(view: View, line_buffered: bool) -> (Outputs, Shared) {
        outputs_with(view, line_buffered, env())
    }

    fn outputs_with(view: View, line_buffered: bool, env: TextEnv) -> (Outputs, Shared) {
        let out = Shared::default();
        let look = TerminalStyle { style: NameStyle::default(), columns: Columns::default(), line_buffered };
        let mut o = Outputs::default();
        o.push(terminal(view, look, env, out.clone()).unwrap());
        (o, out)
    }

    #[test]
    fn json_lines_are_made_once_and_written_per_batch_or_per_line() {
        let (mut t, mut fake) = machine();
        let rec = handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 });
        let lost = LostEvents::exact(LossCause::Queue, 3, 5);
        for line_buffered in [false, true] {
            let (mut o, out) = outputs(View::Json, line_buffered);
            o.batch_start();
            o.record(&rec, None).unwrap();
            o.lost(&lost).unwrap();
            let written = out.0.borrow().0.len();
            assert_eq!(written > 0, line_buffered, "lines wait for the batch's end unless line-buffered");
            o.batch_end().unwrap();
            let (bytes, writes) = out.0.borrow().clone();
            let text = String::from_utf8(bytes).unwrap();
            let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!((lines[0]["event"].as_str(), lines[1]["event"].as_str()), (Some("exec"), Some("lost")));
            assert_eq!(writes, if line_buffered { 2 } else { 1 });
        }
    }

    #[test]
    fn a_long_batch_is_written_in_parts_and_whole() {
        let (mut t, mut fake) = machine();
        let (mut o, out) = outputs(View::Json, false);
        o.batch_start();
        let n = 2000;
        for i in 0..n {
            let data = EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 101 + i, child_tgid: 100 };
            o.record(&handle(&mut t, &mut fake, TICK, data), None).unwrap();
        }
        o.batch_end().unwrap();
        let (bytes, writes) = out.0.borrow().clone();
        assert!(bytes.len() > BATCH_BYTES && writes >= 2, "{} bytes in {writes} writes", bytes.len());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count(), n as usize);
    }

    #[test]
    fn text_starts_with_its_header() {
        let (mut t, mut fake) = machine();
        let (mut o, out) = outputs(View::Text, false);
        o.batch_start();
        o.record(&handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 }), None)
            .unwrap();
        o.batch_end().unwrap();
        let text = String::from_utf8(out.0.borrow().0.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Time") && lines[1].contains(" exec ") && lines[1].ends_with("bash"), "{text}");
    }

    /// 2026-11-28T12:00:00Z minus one tick on the monotonic clock, and a time zone two hours east.
    fn clock() -> SharedClock {
        LocalClock::fixed(1_795_867_200_000_000_000 - TICK as i64, 7200).shared()
    }

    fn fork(parent: i32, child: i32) -> EventData {
        EventData::Fork { parent_pid: parent, parent_tgid: parent, child_pid: child, child_tgid: child }
    }

    #[test]
    fn ecs_documents_take_the_text_writers_clock() {
        let (mut t, mut fake) = machine();
        let host = HostIdentity::new("0123456789abcdef0123456789abcdef", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5");
        let view = View::Ecs(EcsHost { identity: host, name: "web-1".into() });
        let clocked = TextEnv { clock: clock(), ..env() };
        let (mut o, out) = outputs_with(view, false, clocked);
        o.batch_start();
        o.record(&handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 }), None)
            .unwrap();
        o.lost(&LostEvents::exact(LossCause::Queue, 3, 2 * TICK)).unwrap();
        o.batch_end().unwrap();
        let text = String::from_utf8(out.0.borrow().0.clone()).unwrap();
        let docs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(docs.len(), 2, "{text}");
        assert_eq!(docs[0]["@timestamp"], "2026-11-28T12:00:00.000000000Z", "UTC, without the time zone");
        assert_eq!(
            (docs[0]["event"]["action"].as_str(), docs[0]["host"]["name"].as_str()),
            (Some("exec"), Some("web-1"))
        );
        assert_eq!(docs[1]["@timestamp"], "2026-11-28T12:00:00.010000000Z");
        assert_eq!(
            docs[1]["cnlink"]["loss"],
            serde_json::json!({"count": 3, "exact": true, "cause": "queue_overflow"})
        );
    }

    #[test]
    fn ecs_timestamps_take_the_clock_step_of_each_event() {
        use crate::monitor::clock::Reading;
        let (mut t, mut fake) = machine();
        let host = HostIdentity::new("0123456789abcdef0123456789abcdef", "ba9c04d6-63df-4a14-bbdd-20583d11a1b5");
        let view = View::Ecs(EcsHost { identity: host, name: "web-1".into() });
        let base = 1_795_867_200_000_000_000 - TICK as i64;
        let at = |mono: u64, offset: i64| Reading {
            monotonic_ns: mono,
            realtime_minus_monotonic_ns: offset,
            utc_offset_s: 7200,
        };
        let shared = LocalClock::starting(at(2 * TICK, base)).shared();
        let (mut o, out) = outputs_with(view, false, TextEnv { clock: shared.clone(), ..env() });
        // Between the first event and the second the machine slept 60 s: a step from the reading before.
        let step = shared.borrow_mut().update(at(4 * TICK, base + 60_000_000_000));
        assert!(step.is_some());
        o.batch_start();
        o.record(&handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 }), None)
            .unwrap();
        o.record(&handle(&mut t, &mut fake, 3 * TICK, EventData::Exec { process_pid: 100, process_tgid: 100 }), None)
            .unwrap();
        o.lost(&LostEvents::exact(LossCause::Queue, 1, TICK / 2)).unwrap();
        o.batch_end().unwrap();
        let text = String::from_utf8(out.0.borrow().0.clone()).unwrap();
        let docs: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let times: Vec<&str> = docs.iter().map(|d| d["@timestamp"].as_str().unwrap()).collect();
        assert_eq!(
            times,
            ["2026-11-28T12:00:00.000000000Z", "2026-11-28T12:01:00.020000000Z", "2026-11-28T11:59:59.995000000Z"],
            "each event at its own step, in UTC"
        );
    }

    #[test]
    fn the_tree_view_has_its_header_the_local_time_and_the_tables_ancestry() {
        for with_table in [true, false] {
            let (mut t, mut fake) = machine();
            let clocked = TextEnv { clock: clock(), ..env() };
            let (mut o, out) = outputs_with(View::Tree, false, clocked);
            o.batch_start();
            let exec = handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 });
            o.record(&exec, with_table.then_some(&t)).unwrap();
            // 101 is never shown; its child's fork names only 101: the table finds the shell above it.
            let _ = handle(&mut t, &mut fake, 2 * TICK, fork(100, 101));
            let child = handle(&mut t, &mut fake, 3 * TICK, fork(101, 102));
            o.record(&child, with_table.then_some(&t)).unwrap();
            o.lost(&LostEvents::exact(LossCause::Queue, 3, 4 * TICK)).unwrap();
            o.batch_end().unwrap();
            let text = String::from_utf8(out.0.borrow().0.clone()).unwrap();
            let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
            let child = if with_table { "└ bash (parent 101 bash)" } else { "bash (parent 101 bash)" };
            assert_eq!(
                lines,
                [
                    "Time     Event   PID Info    Duration Process tree",
                    "14:00:00 exec    100                  bash (parent 1 init)",
                    &format!("14:00:00 fork    102                  {child}"),
                    "14:00:00 lost      - 3 events lost (queue_overflow)",
                ],
                "{text}"
            );
        }
    }
}
