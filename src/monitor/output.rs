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

    /// A batch begins (text: the clock offset is brought up to date).
    fn batch_start(&mut self) {}

    /// One record; `json` is its native JSON line when some output wants it, else empty.
    fn record(&mut self, rec: &ProcRecord, json: &[u8]) -> io::Result<()>;

    /// One loss; `json` as for records.
    fn lost(&mut self, lost: &LostEvents, json: &[u8]) -> io::Result<()>;

    /// A batch ended: a moment to flush.
    fn batch_end(&mut self) -> io::Result<()>;
}

/// Output for a terminal or a pipe: lines gathered per batch, written at its end (or after every line).
struct Terminal<W: Write> {
    out: W,
    buf: Vec<u8>,
    line_buffered: bool,
}

impl<W: Write> Terminal<W> {
    fn line_done(&mut self) -> io::Result<()> {
        if self.line_buffered {
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
    fn batch_start(&mut self) {
        self.human.resync_clock();
    }

    fn record(&mut self, rec: &ProcRecord, _: &[u8]) -> io::Result<()> {
        self.human.record(&mut self.term.buf, rec);
        self.term.line_done()
    }

    fn lost(&mut self, lost: &LostEvents, _: &[u8]) -> io::Result<()> {
        self.human.lost(&mut self.term.buf, lost);
        self.term.line_done()
    }

    fn batch_end(&mut self) -> io::Result<()> {
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
        self.term.buf.extend_from_slice(json);
        self.term.line_done()
    }

    fn lost(&mut self, _: &LostEvents, json: &[u8]) -> io::Result<()> {
        self.term.buf.extend_from_slice(json);
        self.term.line_done()
    }

    fn batch_end(&mut self) -> io::Result<()> {
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

/// Every output, and the native JSON they share.
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
        for o in &mut self.list {
            o.batch_start();
        }
    }

    pub(crate) fn record(&mut self, rec: &ProcRecord) -> io::Result<()> {
        self.json.clear();
        if self.want_json {
            json::record(&mut self.json, rec, &mut self.frags);
        }
        for o in &mut self.list {
            o.record(rec, self.json.bytes())?;
        }
        Ok(())
    }

    pub(crate) fn lost(&mut self, l: &LostEvents) -> io::Result<()> {
        self.json.clear();
        if self.want_json {
            json::lost(&mut self.json, l);
        }
        for o in &mut self.list {
            o.lost(l, self.json.bytes())?;
        }
        Ok(())
    }

    pub(crate) fn batch_end(&mut self) -> io::Result<()> {
        for o in &mut self.list {
            o.batch_end()?;
        }
        Ok(())
    }
}
