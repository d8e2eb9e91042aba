//! Where records and losses go: the [`Output`] trait, the terminal outputs (text, native JSON), and
//! [`Outputs`], which hands each record to every output, with its native JSON made once for all that want it
//! (a sink publishes exactly those bytes).

use std::io::{self, Write};

use cnlink_procmon::{LostEvents, ProcRecord};

use super::human::{Columns, Human, NameStyle, TextEnv};
use super::json::{self, Fragments, JsonWriter};
use crate::cmd::Format;

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

/// How the terminal output looks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TerminalStyle {
    pub(crate) style: NameStyle,
    pub(crate) columns: Columns,
    pub(crate) line_buffered: bool,
}

/// The terminal output of `format` on `out`, with its header (text) already written.
pub(crate) fn terminal<W: Write + 'static>(
    format: Format,
    look: TerminalStyle,
    env: TextEnv,
    mut out: W,
) -> io::Result<Box<dyn Output>> {
    let term = |out| Terminal { out, buf: Vec::with_capacity(1 << 16), line_buffered: look.line_buffered };
    Ok(match format {
        Format::Text => {
            let human = Human::new(look.style, look.columns, env);
            let mut header = Vec::new();
            human.header(&mut header);
            out.write_all(&header)?;
            out.flush()?;
            Box::new(TextOutput { term: term(out), human })
        }
        Format::Json => Box::new(JsonOutput { term: term(out) }),
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

    pub(crate) fn record(&mut self, rec: &ProcRecord) -> io::Result<()> {
        self.bound()?;
        let start = self.json.bytes().len();
        if self.want_json {
            json::record(&mut self.json, rec, &mut self.frags);
        }
        let line = &self.json.bytes()[start..];
        for o in &mut self.list {
            o.record(rec, line)?;
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
        TextEnv { pid_width: 5, clock: LocalClock::fixed(0).shared(), user_name: Box::new(|_| None) }
    }

    fn outputs(format: Format, line_buffered: bool) -> (Outputs, Shared) {
        let out = Shared::default();
        let look = TerminalStyle { style: NameStyle::default(), columns: Columns::default(), line_buffered };
        let mut o = Outputs::default();
        o.push(terminal(format, look, env(), out.clone()).unwrap());
        (o, out)
    }

    #[test]
    fn json_lines_are_made_once_and_written_per_batch_or_per_line() {
        let (mut t, mut fake) = machine();
        let rec = handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 });
        let lost = LostEvents::exact(LossCause::Queue, 3, 5);
        for line_buffered in [false, true] {
            let (mut o, out) = outputs(Format::Json, line_buffered);
            o.batch_start();
            o.record(&rec).unwrap();
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
        let (mut o, out) = outputs(Format::Json, false);
        o.batch_start();
        let n = 2000;
        for i in 0..n {
            let data = EventData::Fork { parent_pid: 100, parent_tgid: 100, child_pid: 101 + i, child_tgid: 100 };
            o.record(&handle(&mut t, &mut fake, TICK, data)).unwrap();
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
        let (mut o, out) = outputs(Format::Text, false);
        o.batch_start();
        o.record(&handle(&mut t, &mut fake, TICK, EventData::Exec { process_pid: 100, process_tgid: 100 })).unwrap();
        o.batch_end().unwrap();
        let text = String::from_utf8(out.0.borrow().0.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Time") && lines[1].contains(" exec ") && lines[1].ends_with("bash"), "{text}");
    }
}
