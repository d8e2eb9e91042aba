//! Any bytes as a datagram: walk its netlink messages (`NlMessages`), name each one (`NlMsg::kind`), and check
//! that every view stays inside the datagram and that each header re-emits to the bytes it was read from.
#![no_main]

use cnlink::wire::netlink::nlmsg_align;
use cnlink::wire::{NlKind, NlMessages, NlMsg, NlMsgHdr, NLMSG_HDRLEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0usize;
    for msg in NlMessages::new(data) {
        let Ok(msg) = msg else { break };
        let h = msg.header();
        let len = h.len as usize;
        assert!(len >= NLMSG_HDRLEN, "nlmsg_len {len} below the header size");
        assert!(at + len <= data.len(), "message at {at} of {len} bytes runs past {} bytes", data.len());
        assert_eq!(msg.payload(), &data[at + NLMSG_HDRLEN..at + len]);
        let mut out = [0u8; NLMSG_HDRLEN];
        h.emit(&mut out).unwrap();
        assert_eq!(&out[..], &data[at..at + NLMSG_HDRLEN], "header does not re-emit to its bytes");
        if let NlKind::Error(code) = msg.kind() {
            assert_eq!(code.is_some(), msg.payload().len() >= 4);
        }
        at += nlmsg_align(len);
    }
    if let Ok(msg) = NlMsg::new_checked(data) {
        assert!(msg.nlmsg_len() as usize <= data.len());
        assert_eq!(NlMsgHdr::parse(data).unwrap(), msg.header());
    }
});
