//! The text view's naming and column flags, shared by `cnlink proc` and `cnlink collect --format text`.

use crate::monitor::human::{Columns, NameStyle};

/// How the text view names processes, and the columns it adds.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub(crate) struct TextFlags {
    /// Text: extra columns: UID, EUID and TTY (`cnlink collect` prints numbers: the names are the producing
    /// host's).
    #[arg(short = 'x', long)]
    pub(crate) extra: bool,
    /// Text: name processes by their 16-byte comm instead of the command line.
    #[arg(short = 'c', long = "comm")]
    pub(crate) comm: bool,
    /// Text: strip the directory from the program path.
    #[arg(short = 'd', long = "strip-dir")]
    pub(crate) strip_dir: bool,
    /// Text: short names: the program without its arguments.
    #[arg(short = 's', long)]
    pub(crate) short: bool,
    /// Text: a glyph per event kind.
    #[arg(short = 'g', long)]
    pub(crate) glyphs: bool,
    /// Text: a column with the process's cgroup (container) path.
    #[arg(long)]
    pub(crate) cgroup: bool,
}

impl TextFlags {
    /// Any of the flags given.
    pub(crate) fn any(&self) -> bool {
        self.extra || self.comm || self.strip_dir || self.short || self.glyphs || self.cgroup
    }

    pub(crate) fn style(&self) -> NameStyle {
        NameStyle { comm: self.comm, strip_dir: self.strip_dir, short: self.short }
    }

    /// The columns, with `-X`'s `-x -g` added when `everything`.
    pub(crate) fn columns(&self, everything: bool) -> Columns {
        Columns { extra: self.extra || everything, glyphs: self.glyphs || everything, cgroup: self.cgroup }
    }
}
