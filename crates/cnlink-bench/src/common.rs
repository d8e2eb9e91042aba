//! What the benchmarks share: medians, and the rows of `/proc/net/netlink`.
//!
//! `/proc/net/netlink` columns: `sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode`, where `Eth` is the netlink
//! protocol (11 = `NETLINK_CONNECTOR`, 2 = `NETLINK_USERSOCK`), `Pid` the port id, `Groups` the first 32 group bits
//! in hex, `Rmem` the bytes queued for reading and `Drops` the messages the kernel dropped because the receive
//! buffer was full.

use std::io;

/// The median of `v` (the mean of the middle two for an even count), NaNs left out; NaN when nothing is left.
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// One row of `/proc/net/netlink`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NlSock {
    /// The netlink protocol.
    pub(crate) protocol: u32,
    /// The port id.
    pub(crate) port: u32,
    /// The first 32 multicast group bits.
    pub(crate) groups: u32,
    /// Bytes waiting in the receive queue.
    pub(crate) rmem: u64,
    /// Messages the kernel dropped for this socket (receive buffer full).
    pub(crate) drops: u64,
    /// Socket inode.
    pub(crate) inode: u64,
}

/// Parses one data row; `None` for the header or a malformed row.
fn parse_row(line: &str) -> Option<NlSock> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 10 {
        return None;
    }
    Some(NlSock {
        protocol: f[1].parse().ok()?,
        port: f[2].parse().ok()?,
        groups: u32::from_str_radix(f[3], 16).ok()?,
        rmem: f[4].parse().ok()?,
        drops: f[8].parse().ok()?,
        inode: f[9].parse().ok()?,
    })
}

/// Every netlink socket of this network namespace, as `/proc/net/netlink` lists them now.
pub(crate) fn netlink_sockets() -> io::Result<Vec<NlSock>> {
    Ok(std::fs::read_to_string("/proc/net/netlink")?.lines().filter_map(parse_row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[f64::NAN, 1.0]), 1.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rows() {
        let row = "0000000048e5f0e4 11  6397       00000001 2304     0        0     2        7        10103   ";
        assert_eq!(
            parse_row(row),
            Some(NlSock { protocol: 11, port: 6397, groups: 1, rmem: 2304, drops: 7, inode: 10103 })
        );
        let header = "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode";
        assert_eq!(parse_row(header), None);
        assert!(!netlink_sockets().unwrap().is_empty());
    }
}
