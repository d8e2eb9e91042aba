//! Any bytes as a netlink payload: walk its back-to-back `cn_msg`s (`CnMsgs`), check that each view covers exactly
//! its header and `len` data bytes inside the payload, and that each header re-emits to its bytes.
#![no_main]

use cnlink::wire::{CnMsg, CnMsgHdr, CnMsgs, CN_MSG_HDRLEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0usize;
    for cn in CnMsgs::new(data) {
        let Ok(cn) = cn else { break };
        let size = CN_MSG_HDRLEN + cn.len() as usize;
        assert_eq!(cn.as_bytes(), &data[at..at + size]);
        assert_eq!(cn.data().len(), cn.len() as usize);
        let h = cn.header();
        let mut out = [0u8; CN_MSG_HDRLEN];
        h.emit(&mut out).unwrap();
        assert_eq!(&out[..], &data[at..at + CN_MSG_HDRLEN], "header does not re-emit to its bytes");
        at += size;
    }
    assert!(at <= data.len());
    if let Ok(cn) = CnMsg::new_checked(data) {
        assert_eq!(CnMsgHdr::parse(data).unwrap(), cn.header());
    }
});
