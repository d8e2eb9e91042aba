//! Terminal names from `tty_nr`, as `ps` writes them (`cnlink_procmon::tty`, which also reads them back).

pub(crate) use cnlink_procmon::tty::name;
