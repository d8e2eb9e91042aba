//! Terminal names from `tty_nr` (`/proc/PID/stat` field 7), as `ps` writes them.

/// The terminal of a `tty_nr`: `?` for none, `pts/N`, `ttyN`, `ttySN`, else `MAJOR:MINOR`.
pub(crate) fn name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        _ => format!("{major}:{minor}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::name(0), "?");
        assert_eq!(super::name(136 << 8 | 3), "pts/3");
        assert_eq!(super::name(4 << 8 | 1), "tty1");
        assert_eq!(super::name(4 << 8 | 65), "ttyS1");
        assert_eq!(super::name(137 << 8 | 2), "pts/258");
    }
}
