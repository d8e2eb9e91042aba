//! Numbering requests and matching replies to them by `seq` and `ack`.
//!
//! The connector documents ask a sender for a locally unique, increasing `seq` and a random `ack`, and a replier
//! for the same `seq` and `ack + 1`. The kernel's own users disagree (spec §4.9): the proc connector answers
//! `ack + 1` with its own `seq`, w1 answers `seq + 1`, uvesafb echoes both, dm-log matches `seq` only. So the
//! rule is a per-protocol choice, [`MatchRule`], with the documents' rule as the default.

use std::time::Instant;

/// How a reply is recognised from the request's `(seq, ack)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MatchRule {
    /// The documents' rule: same `seq`, `ack + 1`.
    #[default]
    Documented,
    /// `ack + 1`, any `seq`: the proc connector's subscription ack.
    AckPlusOne,
    /// `ack = seq + 1`: w1 data replies.
    SeqPlusOne,
    /// Same `seq` and same `ack`: uvesafb.
    Echo,
    /// Same `seq`, any `ack`: dm-log.
    SeqOnly,
}

impl MatchRule {
    /// Whether a message with `(seq, ack)` answers the request `req`.
    pub const fn matches(self, req: RequestId, seq: u32, ack: u32) -> bool {
        match self {
            MatchRule::Documented => seq == req.seq && ack == req.ack.wrapping_add(1),
            MatchRule::AckPlusOne => ack == req.ack.wrapping_add(1),
            MatchRule::SeqPlusOne => ack == req.seq.wrapping_add(1),
            MatchRule::Echo => seq == req.seq && ack == req.ack,
            MatchRule::SeqOnly => seq == req.seq,
        }
    }
}

/// A request by the `(seq, ack)` it was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The request's `cn_msg.seq`.
    pub seq: u32,
    /// The request's `cn_msg.ack`.
    pub ack: u32,
}

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The request.
    pub id: RequestId,
    /// When to give up.
    pub deadline: Instant,
}

/// Numbers outgoing messages and matches replies to the requests still waiting, oldest first.
#[derive(Debug, Clone)]
pub struct ReplyMatcher {
    rule: MatchRule,
    next_seq: u32,
    next_ack: u32,
    pending: Vec<Pending>,
}

impl ReplyMatcher {
    /// Starts numbering at `seq` 0 and at `initial_ack`, which the caller should draw at random.
    pub fn new(rule: MatchRule, initial_ack: u32) -> Self {
        ReplyMatcher { rule, next_seq: 0, next_ack: initial_ack, pending: Vec::new() }
    }

    /// The matching rule.
    pub fn rule(&self) -> MatchRule {
        self.rule
    }

    /// Numbers for the next outgoing message: `seq` increases by one each time, and so does `ack` from its
    /// random start.
    pub fn next_numbers(&mut self) -> (u32, u32) {
        let n = (self.next_seq, self.next_ack);
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_ack = self.next_ack.wrapping_add(1);
        n
    }

    /// Starts waiting for the reply to `id` until `deadline`.
    pub fn expect(&mut self, id: RequestId, deadline: Instant) {
        self.pending.push(Pending { id, deadline });
    }

    /// Offers an incoming message's `(seq, ack)`: the oldest request it answers, which stops waiting, or `None`
    /// for a message that answers no request waiting.
    pub fn on_message(&mut self, seq: u32, ack: u32) -> Option<Pending> {
        let i = self.pending.iter().position(|p| self.rule.matches(p.id, seq, ack))?;
        Some(self.pending.remove(i))
    }

    /// Whether the request `id` is still waiting.
    pub fn is_pending(&self, id: RequestId) -> bool {
        self.pending.iter().any(|p| p.id == id)
    }

    /// Stops waiting for `id`; returns whether it was waiting.
    pub fn forget(&mut self, id: RequestId) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.id != id);
        self.pending.len() != before
    }

    /// Stops waiting for the oldest request, and returns it.
    pub fn forget_oldest(&mut self) -> Option<Pending> {
        (!self.pending.is_empty()).then(|| self.pending.remove(0))
    }

    /// How many requests are waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The earliest deadline of the requests waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Removes the requests whose deadline is at or before `now` and hands each to `expired`.
    pub fn expire(&mut self, now: Instant, mut expired: impl FnMut(Pending)) {
        self.pending.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                expired(*p);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(seq: u32, ack: u32) -> RequestId {
        RequestId { seq, ack }
    }

    #[test]
    fn rules() {
        assert!(MatchRule::Documented.matches(id(5, 100), 5, 101));
        assert!(!MatchRule::Documented.matches(id(5, 100), 6, 101));
        assert!(MatchRule::AckPlusOne.matches(id(5, 100), 999, 101));
        assert!(MatchRule::SeqPlusOne.matches(id(5, 100), 0, 6));
        assert!(MatchRule::Echo.matches(id(5, 100), 5, 100));
        assert!(MatchRule::SeqOnly.matches(id(5, 100), 5, 7));
        assert!(MatchRule::Documented.matches(id(1, u32::MAX), 1, 0), "ack + 1 wraps");
    }

    #[test]
    fn interleaved_replies_and_timeouts() {
        let t0 = Instant::now();
        let mut m = ReplyMatcher::new(MatchRule::Documented, 0xfffffffe);
        let (a, b) = (m.next_numbers(), m.next_numbers());
        assert_eq!(a, (0, 0xfffffffe));
        assert_eq!(b, (1, 0xffffffff));
        m.expect(id(a.0, a.1), t0 + Duration::from_secs(1));
        m.expect(id(b.0, b.1), t0 + Duration::from_secs(2));
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        // The reply to b arrives first; an unrelated message answers nothing.
        assert_eq!(m.on_message(1, 0).map(|p| p.id.seq), Some(1));
        assert_eq!(m.on_message(7, 7), None);
        assert_eq!(m.on_message(1, 0), None, "a reply is matched once");
        let mut gone = Vec::new();
        m.expire(t0 + Duration::from_millis(999), |p| gone.push(p));
        assert!(gone.is_empty());
        m.expire(t0 + Duration::from_secs(1), |p| gone.push(p));
        assert_eq!(gone.len(), 1);
        assert_eq!(m.poll_timeout(), None);
        assert!(m.is_empty());
    }

    #[test]
    fn forgetting() {
        let t0 = Instant::now();
        let mut m = ReplyMatcher::new(MatchRule::Documented, 10);
        m.expect(id(0, 10), t0);
        m.expect(id(1, 11), t0);
        assert!(m.forget(id(1, 11)));
        assert!(!m.forget(id(1, 11)), "once");
        assert_eq!(m.forget_oldest().map(|p| p.id), Some(id(0, 10)));
        assert_eq!(m.forget_oldest(), None);
        assert_eq!(m.on_message(1, 12), None, "a forgotten request matches nothing");
    }
}
