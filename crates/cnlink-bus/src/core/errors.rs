//! Why the core refused something: one small enum per operation, each with the errno it answers on the wire, and
//! [`Refusal`], any of them with the op it concerned.

use crate::wire::CtlError;

macro_rules! errnos {
    ($(#[$meta:meta])* $name:ident { $($(#[doc = $doc:literal])* #[error($msg:literal)] $variant:ident = $errno:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[doc = $doc])* #[error($msg)] $variant,)*
        }

        impl $name {
            /// The positive errno on the wire.
            pub fn errno(self) -> u32 {
                (match self {
                    $($name::$variant => libc::$errno,)*
                }) as u32
            }
        }
    };
}

errnos! {
    /// Why a registration ([`crate::Core::add_callback`] or the REGISTER op) failed.
    RegisterError {
        /// The id is already registered (the kernel answers `-EINVAL`).
        #[error("id already registered")]
        Duplicate = EINVAL,
        /// The policy does not let this user register this id.
        #[error("not permitted by the bus policy")]
        Denied = EPERM,
        /// The user holds as many ids (or client sockets) as allowed.
        #[error("per-user limit reached")]
        Limit = EDQUOT,
    }
}

errnos! {
    /// Why the UNREGISTER op failed.
    UnregisterError {
        /// The id is not registered.
        #[error("id not registered")]
        NotRegistered = ENOENT,
        /// The id is the bus's own or an in-daemon callback's, or another user registered it.
        #[error("not the registrant's or root's")]
        Denied = EPERM,
    }
}

errnos! {
    /// Why the JOIN op (or the subscription a notification request makes) failed.
    JoinError {
        /// Group 0 cannot be joined.
        #[error("group 0")]
        GroupZero = EINVAL,
        /// The user holds as many subscriptions (or client sockets) as allowed.
        #[error("per-user limit reached")]
        Limit = EDQUOT,
    }
}

errnos! {
    /// Why the LEAVE op failed.
    LeaveError {
        /// The port was not subscribed to the group.
        #[error("not subscribed")]
        NotSubscribed = ENOENT,
    }
}

errnos! {
    /// Why a send ([`crate::Core::send`], [`crate::Context::send`], the SEND and PUBLISH ops) failed.
    SendError {
        /// Group 0 was asked for and no id equal to the message's is registered (`ENODEV`).
        #[error("no callback registered for this id")]
        NoDevice = ENODEV,
        /// Nobody is subscribed to the group (`ESRCH`).
        #[error("nobody listens on the group")]
        NoListeners = ESRCH,
        /// More than 65535 data bytes.
        #[error("message too long")]
        TooLong = EMSGSIZE,
        /// The sender may not send messages carrying this id to a group (SEND and PUBLISH).
        #[error("not permitted to send with this id")]
        Denied = EPERM,
        /// The receiver's queue is full (`EAGAIN`, `ENOBUFS`): the message was dropped.
        #[error("the receiver's queue is full")]
        Full = EAGAIN,
        /// The receiving socket is closed (`ECONNREFUSED`).
        #[error("the receiving socket is closed")]
        Closed = ECONNREFUSED,
        /// Another error from the socket.
        #[error("the send failed")]
        Failed = EIO,
    }
}

impl SendError {
    /// The error of a failed unicast, from the socket's errno.
    pub fn from_errno(errno: i32) -> SendError {
        match errno {
            libc::EAGAIN | libc::ENOBUFS => SendError::Full,
            libc::ECONNREFUSED => SendError::Closed,
            _ => SendError::Failed,
        }
    }
}

errnos! {
    /// Why a historical notification request (`cn_ctl_msg`) failed.
    NotifyError {
        /// More ranges than `ranges_per_request`.
        #[error("too many ranges")]
        TooManyRanges = E2BIG,
        /// A removal (group 0) matched no stored request of the sender's.
        #[error("no such request")]
        NotFound = ENOENT,
        /// The user holds as many requests, subscriptions or client sockets as allowed.
        #[error("per-user limit reached")]
        Limit = EDQUOT,
    }
}

errnos! {
    /// Why a data message to a registered id was not delivered (answered with op `BUS_OP_MESSAGE`).
    MessageError {
        /// The policy does not let this user send to this id.
        #[error("not permitted by the bus policy")]
        Denied = EPERM,
        /// Another socket's request with the same id, `seq` and `ack` waits for its reply.
        #[error("another request with this seq and ack waits for its reply")]
        Busy = EBUSY,
    }
}

/// Something the core refused, by operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A control request that did not decode.
    #[error("malformed control request: {0}")]
    Decode(CtlError),
    /// REGISTER.
    #[error("register: {0}")]
    Register(RegisterError),
    /// UNREGISTER.
    #[error("unregister: {0}")]
    Unregister(UnregisterError),
    /// JOIN.
    #[error("join: {0}")]
    Join(JoinError),
    /// LEAVE.
    #[error("leave: {0}")]
    Leave(LeaveError),
    /// SEND or PUBLISH.
    #[error("send: {0}")]
    Send(SendError),
    /// A notification request.
    #[error("notification request: {0}")]
    Notify(NotifyError),
    /// A data message to an id.
    #[error("message: {0}")]
    Message(MessageError),
}

impl Refusal {
    /// The positive errno on the wire.
    pub fn errno(self) -> u32 {
        match self {
            Refusal::Decode(e) => e.errno(),
            Refusal::Register(e) => e.errno(),
            Refusal::Unregister(e) => e.errno(),
            Refusal::Join(e) => e.errno(),
            Refusal::Leave(e) => e.errno(),
            Refusal::Send(e) => e.errno(),
            Refusal::Notify(e) => e.errno(),
            Refusal::Message(e) => e.errno(),
        }
    }

    /// Refused as not permitted (counted in `denied`).
    pub fn is_denied(self) -> bool {
        matches!(
            self,
            Refusal::Register(RegisterError::Denied)
                | Refusal::Unregister(UnregisterError::Denied)
                | Refusal::Send(SendError::Denied)
                | Refusal::Message(MessageError::Denied)
        )
    }

    /// Refused by a per-user limit (counted in `over_limit`).
    pub fn is_over_limit(self) -> bool {
        matches!(
            self,
            Refusal::Register(RegisterError::Limit)
                | Refusal::Join(JoinError::Limit)
                | Refusal::Notify(NotifyError::Limit)
        )
    }
}

impl From<JoinError> for NotifyError {
    /// A notification request subscribes its sender; group 0 is a removal, so only the limit can refuse that.
    fn from(_: JoinError) -> NotifyError {
        NotifyError::Limit
    }
}
