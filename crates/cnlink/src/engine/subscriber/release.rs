//! The kernel release, as far as the proc connector cares.

/// A kernel's `major.minor` release, from `uname -r` (`/proc/sys/kernel/osrelease`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelRelease {
    /// `6` in `6.18.44-amd64`.
    pub major: u32,
    /// `18` in `6.18.44-amd64`.
    pub minor: u32,
}

impl KernelRelease {
    /// Reads `major.minor` from the start of a release string (`"6.18.44-1-amd64"`, `"5.15.0-91-generic"`,
    /// `"6.6"`); `None` when it does not start that way.
    pub fn parse(release: &str) -> Option<KernelRelease> {
        let mut parts = release.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?;
        let digits = minor.find(|c: char| !c.is_ascii_digit()).unwrap_or(minor.len());
        let minor = minor[..digits].parse().ok()?;
        Some(KernelRelease { major, minor })
    }

    /// Linux 6.6 and later: the 8-byte `struct proc_input` with its event filter, and per-socket subscription
    /// state (a repeated `LISTEN` from one socket counts once).
    pub fn has_proc_input(self) -> bool {
        (self.major, self.minor) >= (6, 6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_strings() {
        assert_eq!(KernelRelease::parse("6.18.44-1-amd64"), Some(KernelRelease { major: 6, minor: 18 }));
        assert_eq!(KernelRelease::parse("5.15.0-91-generic\n"), Some(KernelRelease { major: 5, minor: 15 }));
        assert_eq!(KernelRelease::parse("6.6"), Some(KernelRelease { major: 6, minor: 6 }));
        assert_eq!(KernelRelease::parse("6.6-rc1"), Some(KernelRelease { major: 6, minor: 6 }));
        assert_eq!(KernelRelease::parse("4.19.0+"), Some(KernelRelease { major: 4, minor: 19 }));
        assert_eq!(KernelRelease::parse("linux"), None);
        assert_eq!(KernelRelease::parse("6"), None);
        assert!(KernelRelease::parse("6.6.0").unwrap().has_proc_input());
        assert!(!KernelRelease::parse("6.5.13").unwrap().has_proc_input());
        assert!(KernelRelease::parse("7.0").unwrap().has_proc_input());
    }
}
