//! The wire layer: bytes to views and owned reprs and back, with no IO and no `unsafe`.
//!
//! Every view checks its length once at construction (`new_checked`) and no accessor panics afterwards. Fields
//! are read in native byte order through safe helpers, never by casting the buffer to a kernel struct.
//!
//! A connector datagram from the kernel:
//!
//! ```text
//!  0 ┌ nlmsghdr ─ len type=NLMSG_DONE flags seq pid=0      16 bytes
//! 16 ├ cn_msg ── id{idx,val} seq ack len flags           20 bytes
//! 36 ├ data ──── len bytes (a proc_event: 40 bytes)
//!    └ zero padding to a multiple of 4
//! ```

pub mod bytes;
pub mod cn_msg;
mod error;
pub mod exit_status;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod ids;
pub mod netlink;
pub mod pretty;
pub mod proc_event;
pub mod proc_input;

pub use cn_msg::{datagram, emit_datagram, CnMsg, CnMsgHdr, CnMsgs, CN_MSG_HDRLEN};
pub use error::WireError;
pub use exit_status::ExitStatus;
pub use ids::{group_mask, CbId};
pub use netlink::{NlAddr, NlKind, NlMessages, NlMsg, NlMsgHdr};
pub use pretty::{escape_into, Escaped, Pretty};
pub use proc_event::{comm_str, EventData, Pid, ProcEvent};
pub use proc_input::{EventMask, McastOp, ProcInput};

pub use ids::{
    CN_DST_IDX, CN_DST_VAL, CN_IDX_BB, CN_IDX_CIFS, CN_IDX_CONNECTOR, CN_IDX_DM, CN_IDX_DRBD, CN_IDX_PROC, CN_IDX_V86D,
    CN_KVP_IDX, CN_KVP_VAL, CN_NETLINK_USERS, CN_VAL_CIFS, CN_VAL_CONNECTOR, CN_VAL_DM_USERSPACE_LOG, CN_VAL_DRBD,
    CN_VAL_PROC, CN_VAL_V86D_UVESAFB, CN_VSS_IDX, CN_VSS_VAL, CN_W1_IDX, CN_W1_VAL, CONNECTOR_MAX_MSG_SIZE,
};
pub use netlink::{NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLMSG_NOOP, NLMSG_OVERRUN};
pub use proc_input::{PROC_CN_MCAST_IGNORE, PROC_CN_MCAST_LISTEN, PROC_EVENT_ALL};
