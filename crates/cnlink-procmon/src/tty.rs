//! Terminal names from `tty_nr` (`/proc/PID/stat` field 7), as `ps` writes them, and back.

/// The terminal of a `tty_nr`: `?` for none, `pts/N`, `ttyN`, `ttySN`, else `MAJOR:MINOR`.
pub fn name(tty_nr: u32) -> String {
    let (major, minor) = split(tty_nr);
    match major {
        0 => "?".into(),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        136..=143 => format!("pts/{}", minor + (major - 136) * 256),
        _ => format!("{major}:{minor}"),
    }
}

/// A `tty_nr` that [`name`] names `name`; `None` for `?` and for what `name` never writes. Several numbers can
/// have one name (`pts/300` is major 136 minor 300 or major 137 minor 44): this gives one of them.
pub fn parse(name: &str) -> Option<u32> {
    let num = |s: &str| s.parse::<u32>().ok().filter(|_| !s.starts_with('+') && (s == "0" || !s.starts_with('0')));
    let (major, minor) = if let Some(n) = name.strip_prefix("pts/").and_then(num) {
        let major = 136 + (n / 256).min(7);
        (major, n - (major - 136) * 256)
    } else if let Some(n) = name.strip_prefix("ttyS").and_then(num) {
        (4, n.checked_add(64)?)
    } else if let Some(n) = name.strip_prefix("tty").and_then(num).filter(|&n| n < 64) {
        (4, n)
    } else {
        let (major, minor) = name.split_once(':')?;
        let (major, minor) = (num(major)?, num(minor)?);
        if matches!(major, 0 | 4 | 136..=143) {
            return None;
        }
        (major, minor)
    };
    (major <= 0xfff && minor <= 0xfffff).then_some((major << 8) | (minor & 0xff) | ((minor & 0xfff00) << 12))
}

/// Major and minor of a `tty_nr`.
fn split(tty_nr: u32) -> (u32, u32) {
    ((tty_nr >> 8) & 0xfff, (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(name(0), "?");
        assert_eq!(name(136 << 8 | 3), "pts/3");
        assert_eq!(name(4 << 8 | 1), "tty1");
        assert_eq!(name(4 << 8 | 65), "ttyS1");
        assert_eq!(name(137 << 8 | 2), "pts/258");
    }

    #[test]
    fn every_name_parses_back_to_a_number_of_that_name() {
        let mut nrs = vec![136 << 8 | 3, 4 << 8 | 1, 4 << 8 | 65, 137 << 8 | 2, 5 << 8 | 1, 0xfff << 8 | 0xff];
        nrs.extend([136 << 8 | (0x3ff00 << 12) | 0x12, 143 << 8 | (0xfff00 << 12) | 0xff, 4 << 8 | (0x100 << 12)]);
        for nr in nrs {
            let n = name(nr);
            assert_eq!(parse(&n).map(name), Some(n.clone()), "{nr:#x} {n}");
        }
        for bad in ["?", "", "pts/", "pts/x", "tty64", "4:1", "0:3", "136:1", "1:-1", "9999:1", "tty01", "pts/+1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
