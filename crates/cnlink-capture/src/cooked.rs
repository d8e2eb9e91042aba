//! The 16-byte "cooked" header that starts every `LINKTYPE_NETLINK` packet (the Linux `sockaddr_ll` as libpcap
//! writes it for an `nlmon` device), all fields big-endian whatever the section's byte order:
//!
//! ```text
//! offset  size  field          value written
//!      0     2  packet type    PACKET_KERNEL (7) when nlmsg_pid is 0, else PACKET_USER (6), as nlmon does
//!      2     2  ARPHRD_ type   ARPHRD_NETLINK (824): Wireshark's netlink dissector checks it
//!      4     2  address length 0
//!      6     8  address        zeros
//!     14     2  protocol       the netlink family: NETLINK_CONNECTOR (11), ...
//!     16     -  the datagram, exactly as received
//! ```

/// Size of the cooked header.
pub const COOKED_HDRLEN: usize = 16;
/// `ARPHRD_NETLINK`: the device type of netlink captures.
pub const ARPHRD_NETLINK: u16 = 824;
/// `PACKET_USER`: sent by a userspace socket (as `nlmon` marks it).
pub const PACKET_USER: u16 = 6;
/// `PACKET_KERNEL`: sent by the kernel (as `nlmon` marks it).
pub const PACKET_KERNEL: u16 = 7;
/// `NETLINK_CONNECTOR`: the kernel connector's netlink family.
pub const NETLINK_CONNECTOR: u16 = 11;
/// `NETLINK_USERSOCK`: the family the userspace connector bus uses.
pub const NETLINK_USERSOCK: u16 = 2;

/// The cooked header of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CookedHeader {
    /// `PACKET_*`: who sent it ([`PACKET_KERNEL`], [`PACKET_USER`], ...).
    pub packet_type: u16,
    /// `ARPHRD_*`: [`ARPHRD_NETLINK`] in netlink captures.
    pub hatype: u16,
    /// Meaningful bytes of `address` (0 for netlink).
    pub address_len: u16,
    /// Sender's link-layer address, zero-padded (unused for netlink).
    pub address: [u8; 8],
    /// The netlink family, e.g. [`NETLINK_CONNECTOR`].
    pub protocol: u16,
}

impl CookedHeader {
    /// The header for a datagram of netlink family `protocol`: the packet type comes from the first message's
    /// `nlmsg_pid` (0: the kernel), read in native byte order like the datagram itself.
    pub fn for_datagram(protocol: u16, datagram: &[u8]) -> CookedHeader {
        let from_kernel = datagram.get(12..16).is_some_and(|b| b == [0; 4]);
        CookedHeader {
            packet_type: if from_kernel { PACKET_KERNEL } else { PACKET_USER },
            hatype: ARPHRD_NETLINK,
            address_len: 0,
            address: [0; 8],
            protocol,
        }
    }

    /// The 16 bytes.
    pub fn to_bytes(&self) -> [u8; COOKED_HDRLEN] {
        let mut b = [0u8; COOKED_HDRLEN];
        b[0..2].copy_from_slice(&self.packet_type.to_be_bytes());
        b[2..4].copy_from_slice(&self.hatype.to_be_bytes());
        b[4..6].copy_from_slice(&self.address_len.to_be_bytes());
        b[6..14].copy_from_slice(&self.address);
        b[14..16].copy_from_slice(&self.protocol.to_be_bytes());
        b
    }

    /// Reads the header at the start of `frame`; `None` when it is shorter than 16 bytes.
    pub fn parse(frame: &[u8]) -> Option<CookedHeader> {
        let b: &[u8; COOKED_HDRLEN] = frame.get(..COOKED_HDRLEN)?.try_into().ok()?;
        let be = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let mut address = [0u8; 8];
        address.copy_from_slice(&b[6..14]);
        Some(CookedHeader { packet_type: be(0), hatype: be(2), address_len: be(4), address, protocol: be(14) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_big_endian() {
        let h = CookedHeader::for_datagram(NETLINK_CONNECTOR, &[0u8; 16]);
        assert_eq!(h.to_bytes(), [0, 7, 0x03, 0x38, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11]);
        assert_eq!(CookedHeader::parse(&h.to_bytes()), Some(h));
        assert_eq!(CookedHeader::parse(&[0; 15]), None);
    }

    #[test]
    fn packet_type_follows_the_sender_port() {
        let mut d = [0u8; 16];
        assert_eq!(CookedHeader::for_datagram(2, &d).packet_type, PACKET_KERNEL);
        d[12] = 9;
        assert_eq!(CookedHeader::for_datagram(2, &d).packet_type, PACKET_USER);
        assert_eq!(CookedHeader::for_datagram(2, &d[..8]).packet_type, PACKET_USER);
    }
}
