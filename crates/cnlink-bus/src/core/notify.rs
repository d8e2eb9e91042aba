//! Stored notification requests (the historical `cn_ctl_msg` protocol, spec §6), bounded and de-duplicated.

use cnlink::wire::CbId;

use crate::wire::CtlMsg;

/// One stored request and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) req: CtlMsg,
    pub(crate) port: u32,
    pub(crate) uid: u32,
}

/// The requests, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct NotifyTable {
    reqs: Vec<Stored>,
}

impl NotifyTable {
    /// Whether `port` already stored exactly this request (same group and ranges).
    pub(crate) fn contains(&self, port: u32, req: &CtlMsg) -> bool {
        self.reqs.iter().any(|s| s.port == port && s.req == *req)
    }

    /// Whether `port` has a stored request for `group`.
    pub(crate) fn has(&self, port: u32, group: u32) -> bool {
        self.reqs.iter().any(|s| s.port == port && s.req.group == group)
    }

    /// Stores a request.
    pub(crate) fn add(&mut self, port: u32, uid: u32, req: CtlMsg) {
        self.reqs.push(Stored { req, port, uid });
    }

    /// Removes the requests with the same ranges as `req` (the original's equality), made by `uid`, or by
    /// anyone when `uid` is `None` (root).
    pub(crate) fn remove_equal(&mut self, uid: Option<u32>, req: &CtlMsg) -> Vec<Stored> {
        self.take_where(|s| s.req.same_ranges(req) && uid.is_none_or(|u| u == s.uid))
    }

    /// Removes the requests `port` made.
    pub(crate) fn remove_port(&mut self, port: u32) -> Vec<Stored> {
        self.take_where(|s| s.port == port)
    }

    fn take_where(&mut self, mut f: impl FnMut(&Stored) -> bool) -> Vec<Stored> {
        let mut out = Vec::new();
        self.reqs.retain(|s| {
            if f(s) {
                out.push(s.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// The groups to notify about `id`, each once, in the order of the first request naming it.
    pub(crate) fn groups_for(&self, id: CbId) -> Vec<u32> {
        let mut groups = Vec::new();
        for s in self.reqs.iter().filter(|s| s.req.matches(id)) {
            if !groups.contains(&s.req.group) {
                groups.push(s.req.group);
            }
        }
        groups
    }

    /// Number of stored requests.
    pub(crate) fn len(&self) -> usize {
        self.reqs.len()
    }
}
