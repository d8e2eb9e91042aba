//! The seq/ack genealogy of requests and replies.
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
    /// Whether a message with `(seq, ack)` answers a request sent with `(req_seq, req_ack)`.
    pub const fn matches(self, req_seq: u32, req_ack: u32, seq: u32, ack: u32) -> bool {
        match self {
            MatchRule::Documented => seq == req_seq && ack == req_ack.wrapping_add(1),
            MatchRule::AckPlusOne => ack == req_ack.wrapping_add(1),
            MatchRule::SeqPlusOne => ack == req_seq.wrapping_add(1),
            MatchRule::Echo => seq == req_seq && ack == req_ack,
            MatchRule::SeqOnly => seq == req_seq,
        }
    }
}

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The request's `seq`.
    pub seq: u32,
    /// The request's `ack`.
    pub ack: u32,
    /// When to give up.
    pub deadline: Instant,
}

/// Numbers outgoing messages and matches replies to the requests still waiting.
#[derive(Debug, Clone)]
pub struct Genealogy {
    rule: MatchRule,
    next_seq: u32,
    next_ack: u32,
    pending: Vec<Pending>,
}

impl Genealogy {
    /// Starts numbering at `seq` 0 and at `initial_ack`, which the caller should draw at random.
    pub fn new(rule: MatchRule, initial_ack: u32) -> Self {
        Genealogy { rule, next_seq: 0, next_ack: initial_ack, pending: Vec::new() }
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

    /// Starts waiting for the reply to a request sent with `(seq, ack)` until `deadline`.
    pub fn expect(&mut self, seq: u32, ack: u32, deadline: Instant) {
        self.pending.push(Pending { seq, ack, deadline });
    }

    /// Offers an incoming message's `(seq, ack)`: the request it answers, which stops waiting, or `None` for a
    /// new message.
    pub fn on_message(&mut self, seq: u32, ack: u32) -> Option<Pending> {
        let i = self.pending.iter().position(|p| self.rule.matches(p.seq, p.ack, seq, ack))?;
        Some(self.pending.swap_remove(i))
    }

    /// Whether the request `(seq, ack)` is still waiting.
    pub fn is_pending(&self, seq: u32, ack: u32) -> bool {
        self.pending.iter().any(|p| p.seq == seq && p.ack == ack)
    }

    /// The earliest deadline of the requests waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Removes and returns the requests whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Pending> {
        let mut out = Vec::new();
        self.pending.retain(|p| {
            let keep = p.deadline > now;
            if !keep {
                out.push(*p);
            }
            keep
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rules() {
        assert!(MatchRule::Documented.matches(5, 100, 5, 101));
        assert!(!MatchRule::Documented.matches(5, 100, 6, 101));
        assert!(MatchRule::AckPlusOne.matches(5, 100, 999, 101));
        assert!(MatchRule::SeqPlusOne.matches(5, 100, 0, 6));
        assert!(MatchRule::Echo.matches(5, 100, 5, 100));
        assert!(MatchRule::SeqOnly.matches(5, 100, 5, 7));
        assert!(MatchRule::Documented.matches(1, u32::MAX, 1, 0), "ack + 1 wraps");
    }

    #[test]
    fn interleaved_replies_and_timeouts() {
        let t0 = Instant::now();
        let mut g = Genealogy::new(MatchRule::Documented, 0xfffffffe);
        let a = g.next_numbers();
        let b = g.next_numbers();
        assert_eq!(a, (0, 0xfffffffe));
        assert_eq!(b, (1, 0xffffffff));
        g.expect(a.0, a.1, t0 + Duration::from_secs(1));
        g.expect(b.0, b.1, t0 + Duration::from_secs(2));
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        // The reply to b arrives first; an unrelated message is new.
        assert_eq!(g.on_message(1, 0).map(|p| p.seq), Some(1));
        assert_eq!(g.on_message(7, 7), None);
        assert_eq!(g.on_message(1, 0), None, "a reply is matched once");
        assert!(g.expire(t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(g.expire(t0 + Duration::from_secs(1)).len(), 1);
        assert_eq!(g.poll_timeout(), None);
    }
}
