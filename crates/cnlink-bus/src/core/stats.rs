//! The core's counters and gauges, in the order of the STATS reply (new ones are appended, never inserted).

macro_rules! stats {
    ($($(#[doc = $doc:literal])* $name:ident),* $(,)?) => {
        /// Counters of everything the core did, dropped or refused, and gauges of what it holds.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct BusCounters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl BusCounters {
            /// Counter names, in the order of [`BusCounters::values`] and of the STATS reply.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Counter values, in the order of [`BusCounters::NAMES`].
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$name),*]
            }
        }
    };
}

stats! {
    /// Datagrams handled.
    received,
    /// Datagrams dropped as malformed (short, lying lengths, oversize).
    malformed,
    /// Control requests that did not decode (answered `EINVAL`/`EOPNOTSUPP`).
    bad_control,
    /// Control requests handled.
    control,
    /// Messages to ids nobody registered (dropped, as the kernel does).
    unroutable,
    /// Requests refused as not permitted (`EPERM`: the policy, or unregistering another user's id).
    denied,
    /// Requests refused by a per-user limit.
    over_limit,
    /// Notification requests that repeated a stored one.
    notify_dedup,
    /// Messages handed to local callbacks.
    delivered_local,
    /// Local deliveries dropped: the action queue or the callback's queue was full, or the callback was removed.
    dropped_local,
    /// Messages forwarded to remote owners.
    forwarded,
    /// Replies routed back to requesters.
    replies_routed,
    /// Reply routes replaced by the same socket's request with the same id, seq and ack.
    route_collisions,
    /// Reply routes that expired unanswered.
    routes_expired,
    /// Group messages queued by SEND and PUBLISH (one per subscriber).
    fanout,
    /// Group sends nobody listened to (`ESRCH`).
    esrch,
    /// Notifications queued (one per subscriber).
    notifications,
    /// Sends the kernel refused with a full receiver (`EAGAIN`/`ENOBUFS`).
    dropped_full,
    /// Clients found gone and cleaned up.
    clients_gone,
    /// Registered ids now (gauge).
    ids,
    /// Subscriptions now (gauge).
    subscriptions,
    /// Stored notification requests now (gauge).
    notify_requests,
    /// Reply routes waiting now (gauge).
    routes,
    /// Clients holding state now (gauge).
    clients,
    /// Users holding anything now (gauge).
    users,
    /// Messages from an id's owner on its id that answered no waiting request (a late or second reply, a reply by
    /// another rule): dropped.
    replies_unrouted,
    /// Requests refused (`EBUSY`) because another socket's request with the same id, seq and ack waits for its
    /// reply.
    routes_busy,
    /// Reply routes dropped to make room for a newer request of the same user (`routes_per_user`).
    routes_evicted,
    /// Receive overruns of the bus's own socket (`ENOBUFS`: datagrams lost before the bus read them).
    overruns,
    /// Log lines dropped because the log queue was full (the log's writer is slow or blocked).
    log_dropped,
    /// Panics caught in local callbacks.
    callback_panics,
    /// Clients whose process could not be watched (their pid names no process of the bus's pid namespace that holds
    /// their socket), or whose socket outlived the process watched: their socket is checked instead.
    unwatched,
    /// Clients whose process is watched (it was found holding their socket).
    watched,
    /// REGISTER requests that decoded (granted or refused).
    op_register,
    /// UNREGISTER requests that decoded.
    op_unregister,
    /// JOIN requests that decoded.
    op_join,
    /// LEAVE requests that decoded.
    op_leave,
    /// SEND requests that decoded.
    op_send,
    /// PUBLISH requests that decoded.
    op_publish,
    /// LIST requests that decoded.
    op_list,
    /// STATS requests that decoded.
    op_stats,
    /// Notification requests (the documents' `cn_notify_req` form) that decoded.
    op_notify,
}
