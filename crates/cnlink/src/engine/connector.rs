//! The sans-IO side of a request/reply client: framing, trust, decoding, reply matching, overrun accounting, a
//! bounded queue and request deadlines.
//!
//! [`crate::Connector`] (blocking) and `cnlink::tokio::AsyncConnector` are thin loops over a [`ClientCore`], and
//! the bus's clients are those drivers configured for the bus. What the core promises:
//!
//! - A datagram from a sender the [`Trust`] setting refuses is counted (`rejected`) and dropped before it is
//!   decoded or matched. One from the peer's own port whose credentials are refused also fails every request
//!   waiting ([`RequestError::Untrusted`]): only the holder of a port can send from it, so someone else holds it.
//! - A reply goes to the request waiting for it. Every other message, including a late reply to a request that
//!   timed out, failed or was forgotten, is queued as a [`ClientItem::Message`] (a late one is also counted).
//! - The queue holds at most [`ClientCore::queue_limit`] messages; what does not fit is dropped and counted.
//! - An overrun (`ENOBUFS`) is a [`ClientItem::Overrun`] and a count, never an error; requests keep waiting.
//! - A request leaves nothing behind once its outcome is taken or it is forgotten; [`PendingRequest`] forgets it
//!   when dropped, so a driver that returns early or a cancelled future cannot leak it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::{self, CbId, CnMsgHdr, CnMsgs, NlAddr, NlKind, NlMessages, NlMsgHdr, WireError};

use super::reply_matcher::{MatchRule, ReplyMatcher, RequestId};

pub use crate::socket::Credentials;

/// One received connector message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMsg {
    /// The netlink header it came in, as received.
    pub nl: NlMsgHdr,
    /// The `cn_msg` header.
    pub hdr: CnMsgHdr,
    /// The `len` data bytes.
    pub data: Vec<u8>,
    /// Who sent it (port 0 is the kernel) and to which group.
    pub from: NlAddr,
    /// The sender's credentials, when the socket asked for them.
    pub creds: Option<Credentials>,
    /// The whole datagram it arrived in, byte for byte. The messages of one datagram (a bundle of several
    /// `cn_msg`s, or several netlink messages) share it.
    pub datagram: Arc<[u8]>,
}

/// What a client receives besides replies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientItem {
    /// A message that answers no request waiting: traffic of a group, a request to this client, a late reply.
    Message(OwnedMsg),
    /// The socket's receive buffer overflowed (`ENOBUFS`): the kernel dropped datagrams meant for this client.
    /// Overruns with no message between them are reported once; [`ClientCounters::overruns`] counts each.
    Overrun,
}

impl ClientItem {
    /// The message, if this is one.
    pub fn message(&self) -> Option<&OwnedMsg> {
        match self {
            ClientItem::Message(m) => Some(m),
            ClientItem::Overrun => None,
        }
    }

    /// The message, if this is one.
    pub fn into_message(self) -> Option<OwnedMsg> {
        match self {
            ClientItem::Message(m) => Some(m),
            ClientItem::Overrun => None,
        }
    }
}

/// Whose datagrams a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only the peer's port (the kernel's 0 on the connector).
    PeerOnly,
    /// Only the peer's port, and only when the sender's `SCM_CREDENTIALS` uid is one of these (a datagram without
    /// credentials is refused). A userspace peer's port can be bound by anyone while its owner is away; this tells
    /// the real peer from such an impostor.
    PeerWithUids(Vec<u32>),
    /// Anyone (listening tools; the sender is in every [`OwnedMsg`]).
    Anyone,
}

impl Trust {
    /// Whether a client of `peer` accepts a datagram from `from` with `creds`.
    pub fn admits(&self, peer: NlAddr, from: NlAddr, creds: Option<Credentials>) -> bool {
        match self {
            Trust::Anyone => true,
            Trust::PeerOnly => from.port == peer.port,
            Trust::PeerWithUids(uids) => from.port == peer.port && creds.is_some_and(|c| uids.contains(&c.uid)),
        }
    }
}

/// Why a request ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Its deadline passed.
    Expired,
    /// The peer's port answered with credentials the [`Trust`] setting refuses: another process holds that port.
    Untrusted {
        /// The port.
        port: u32,
        /// Who answered from it (`None`: no credentials came with the datagram).
        creds: Option<Credentials>,
    },
}

/// Counters of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCounters {
    /// Messages accepted (replies included).
    pub received: u64,
    /// Datagrams refused because the [`Trust`] setting does not admit their sender.
    pub rejected: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Receive buffer overruns (`ENOBUFS` reports).
    pub overruns: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Replies that came after their request was given up (timed out, failed or forgotten); they are queued as
    /// messages.
    pub late: u64,
    /// Requests whose deadline passed.
    pub expired: u64,
}

/// How many messages a client queues by default before dropping (and counting) more.
pub const DEFAULT_QUEUE_LIMIT: usize = 4096;
/// Requests that may wait at once; starting another forgets the oldest.
const MAX_REQUESTS: usize = 256;
/// Requests given up on that are remembered, so that their late replies are counted as late.
const REMEMBERED: usize = 64;
/// The deadline of a request whose timeout does not fit an `Instant`.
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Frames requests and sorts what comes back into replies and other items.
#[derive(Debug, Clone)]
pub struct ClientCore {
    matcher: ReplyMatcher,
    peer: NlAddr,
    trust: Trust,
    /// Requests that ended, until their driver takes the outcome.
    outcomes: Vec<(RequestId, Result<OwnedMsg, RequestError>)>,
    /// Requests given up on, newest last.
    given_up: VecDeque<RequestId>,
    items: VecDeque<ClientItem>,
    queue_limit: usize,
    counters: ClientCounters,
}

impl ClientCore {
    /// A client talking to `peer`, matching replies by `rule`, numbering from a random `initial_ack`.
    pub fn new(peer: NlAddr, rule: MatchRule, trust: Trust, initial_ack: u32) -> Self {
        ClientCore {
            matcher: ReplyMatcher::new(rule, initial_ack),
            peer,
            trust,
            outcomes: Vec::new(),
            given_up: VecDeque::new(),
            items: VecDeque::new(),
            queue_limit: DEFAULT_QUEUE_LIMIT,
            counters: ClientCounters::default(),
        }
    }

    /// The peer requests go to.
    pub fn peer(&self) -> NlAddr {
        self.peer
    }

    /// Whose datagrams are accepted.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Changes whose datagrams are accepted, from the next datagram on.
    pub fn set_trust(&mut self, trust: Trust) {
        self.trust = trust;
    }

    /// How many messages may wait in the queue.
    pub fn queue_limit(&self) -> usize {
        self.queue_limit
    }

    /// Bounds the queue ([`DEFAULT_QUEUE_LIMIT`] by default; 0 drops, and counts, every message that is not a
    /// reply). Messages already queued stay.
    pub fn set_queue_limit(&mut self, limit: usize) {
        self.queue_limit = limit;
    }

    /// Counters so far.
    pub fn counters(&self) -> ClientCounters {
        self.counters
    }

    /// Frames a new message to `id` with the next `(seq, ack)`; returns the datagram and the numbers.
    pub fn frame(&mut self, id: CbId, data: &[u8], nlmsg_pid: u32) -> Result<(Vec<u8>, RequestId), WireError> {
        let (seq, ack) = self.matcher.next_numbers();
        let d = wire::datagram(CnMsgHdr { id, seq, ack, ..Default::default() }, data, nlmsg_pid)?;
        Ok((d, RequestId { seq, ack }))
    }

    /// Frames a message with a header of the caller's choosing (a reply, say); `hdr.len` is set from `data`.
    pub fn frame_raw(&self, hdr: CnMsgHdr, data: &[u8], nlmsg_pid: u32) -> Result<Vec<u8>, WireError> {
        wire::datagram(hdr, data, nlmsg_pid)
    }

    /// Frames a request to `id` and waits for its reply until `now + timeout`. Send the datagram, then watch the
    /// request with [`PendingRequest`] (or call [`ClientCore::forget`] when it is abandoned).
    pub fn start_request(
        &mut self,
        now: Instant,
        id: CbId,
        data: &[u8],
        nlmsg_pid: u32,
        timeout: Duration,
    ) -> Result<(Vec<u8>, RequestId), WireError> {
        let (d, req) = self.frame(id, data, nlmsg_pid)?;
        if self.matcher.len() >= MAX_REQUESTS {
            if let Some(oldest) = self.matcher.forget_oldest() {
                self.remember(oldest.id);
            }
        }
        let deadline = now.checked_add(timeout).or_else(|| now.checked_add(FAR)).unwrap_or(now);
        self.matcher.expect(req, deadline);
        Ok((d, req))
    }

    /// Sorts one received datagram into replies and queued messages.
    pub fn handle(&mut self, from: NlAddr, creds: Option<Credentials>, datagram: &[u8]) {
        if !self.trust.admits(self.peer, from, creds) {
            self.counters.rejected += 1;
            if from.port == self.peer.port {
                self.fail_all(RequestError::Untrusted { port: from.port, creds });
            }
            return;
        }
        let mut shared: Option<Arc<[u8]>> = None;
        for nl in NlMessages::new(datagram) {
            let Ok(nl) = nl else {
                self.counters.malformed += 1;
                return;
            };
            if !matches!(nl.kind(), NlKind::Data(_)) {
                continue;
            }
            for cn in CnMsgs::new(nl.payload()) {
                let Ok(cn) = cn else {
                    self.counters.malformed += 1;
                    break;
                };
                self.counters.received += 1;
                let datagram = shared.get_or_insert_with(|| Arc::from(datagram)).clone();
                let msg =
                    OwnedMsg { nl: nl.header(), hdr: cn.header(), data: cn.data().to_vec(), from, creds, datagram };
                self.sort(msg);
            }
        }
    }

    /// Notes a receive buffer overrun (`ENOBUFS`): counted and queued as [`ClientItem::Overrun`].
    pub fn handle_overrun(&mut self) {
        self.counters.overruns += 1;
        self.queue(ClientItem::Overrun);
    }

    /// Ends the requests whose deadline is at or before `now` ([`RequestError::Expired`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.matcher.expire(now, |p| expired.push(p.id));
        for id in expired {
            self.counters.expired += 1;
            self.remember(id);
            self.settle(id, Err(RequestError::Expired));
        }
    }

    /// The earliest deadline of the requests waiting: call [`ClientCore::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.matcher.poll_timeout()
    }

    /// Takes the outcome of request `id` once it has one.
    pub fn poll_reply(&mut self, id: RequestId) -> Option<Result<OwnedMsg, RequestError>> {
        let i = self.outcomes.iter().position(|(r, _)| *r == id)?;
        Some(self.outcomes.remove(i).1)
    }

    /// Takes the oldest queued item.
    pub fn poll_item(&mut self) -> Option<ClientItem> {
        self.items.pop_front()
    }

    /// How many items are queued.
    pub fn queued(&self) -> usize {
        self.items.len()
    }

    /// Gives up on request `id`: it stops waiting, and its reply, when it comes (or if it came and was not
    /// taken), is queued as a new message.
    pub fn forget(&mut self, id: RequestId) {
        if self.matcher.forget(id) {
            self.remember(id);
        } else if let Some(i) = self.outcomes.iter().position(|(r, _)| *r == id) {
            if let (_, Ok(msg)) = self.outcomes.remove(i) {
                self.counters.late += 1;
                self.queue(ClientItem::Message(msg));
            }
        }
    }

    fn sort(&mut self, msg: OwnedMsg) {
        if let Some(p) = self.matcher.on_message(msg.hdr.seq, msg.hdr.ack) {
            self.settle(p.id, Ok(msg));
            return;
        }
        let rule = self.matcher.rule();
        if let Some(i) = self.given_up.iter().position(|&r| rule.matches(r, msg.hdr.seq, msg.hdr.ack)) {
            self.given_up.remove(i);
            self.counters.late += 1;
        }
        self.queue(ClientItem::Message(msg));
    }

    /// Records the outcome of a request that stopped waiting (keeping at most [`MAX_REQUESTS`]: an outcome nobody
    /// took is forgotten first).
    fn settle(&mut self, id: RequestId, outcome: Result<OwnedMsg, RequestError>) {
        if self.outcomes.len() >= MAX_REQUESTS {
            let (oldest, _) = self.outcomes[0];
            self.forget(oldest);
        }
        self.outcomes.push((id, outcome));
    }

    fn fail_all(&mut self, err: RequestError) {
        while let Some(p) = self.matcher.forget_oldest() {
            self.remember(p.id);
            self.settle(p.id, Err(err));
        }
    }

    fn remember(&mut self, id: RequestId) {
        if self.given_up.len() >= REMEMBERED {
            self.given_up.pop_front();
        }
        self.given_up.push_back(id);
    }

    fn queue(&mut self, item: ClientItem) {
        match item {
            ClientItem::Overrun if matches!(self.items.back(), Some(ClientItem::Overrun)) => {}
            ClientItem::Message(_) if self.items.len() >= self.queue_limit => self.counters.dropped += 1,
            item => self.items.push_back(item),
        }
    }
}

/// A request in flight, forgotten when dropped ([`ClientCore::forget`]): a driver that returns early on an error,
/// or an async request whose future is dropped, leaves nothing waiting, and the late reply becomes a message.
#[derive(Debug)]
pub struct PendingRequest<'a> {
    core: &'a mut ClientCore,
    id: RequestId,
}

impl<'a> PendingRequest<'a> {
    /// Watches request `id` of `core` (from [`ClientCore::start_request`]).
    pub fn new(core: &'a mut ClientCore, id: RequestId) -> Self {
        PendingRequest { core, id }
    }

    /// The request.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The core, to feed it while waiting.
    pub fn core(&mut self) -> &mut ClientCore {
        self.core
    }

    /// The request's outcome, once it has one.
    pub fn poll_reply(&mut self) -> Option<Result<OwnedMsg, RequestError>> {
        self.core.poll_reply(self.id)
    }
}

impl Drop for PendingRequest<'_> {
    fn drop(&mut self) {
        self.core.forget(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: CbId = CbId::new(14, 0x456);
    const PEER: NlAddr = NlAddr { port: 4242, groups: 0 };

    fn creds(uid: u32) -> Option<Credentials> {
        Some(Credentials { pid: 99, uid, gid: uid })
    }

    fn msg(seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
        wire::datagram(CnMsgHdr { id: ID, seq, ack, ..Default::default() }, data, 0).unwrap()
    }

    fn reply_to(r: RequestId, data: &[u8]) -> Vec<u8> {
        msg(r.seq, r.ack.wrapping_add(1), data)
    }

    fn core(trust: Trust) -> ClientCore {
        ClientCore::new(PEER, MatchRule::Documented, trust, 100)
    }

    fn message(c: &mut ClientCore) -> Option<OwnedMsg> {
        c.poll_item().and_then(ClientItem::into_message)
    }

    #[test]
    fn replies_and_new_messages_are_sorted() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerOnly);
        let (_, r) = c.start_request(t0, ID, b"hi", 0, Duration::from_secs(1)).unwrap();
        c.handle(PEER, None, &msg(9, 0, b"n"));
        c.handle(NlAddr::port(77), None, &reply_to(r, b"forged"));
        assert_eq!(c.counters().rejected, 1, "not from the peer");
        assert!(c.poll_reply(r).is_none(), "a rejected datagram is not matched");
        c.handle(PEER, None, &reply_to(r, b"hi"));
        assert_eq!(c.poll_reply(r).unwrap().unwrap().data, b"hi");
        assert!(c.poll_reply(r).is_none(), "taken once");
        assert_eq!(message(&mut c).unwrap().hdr.seq, 9);
        assert!(c.poll_item().is_none());
        assert_eq!(c.poll_timeout(), None, "nothing waits");
        assert_eq!(c.counters().received, 2);
    }

    #[test]
    fn a_late_reply_after_the_deadline_is_a_new_message() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerOnly);
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_millis(50)).unwrap();
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_millis(50)));
        c.handle_timeout(t0 + Duration::from_millis(49));
        assert!(c.poll_reply(r).is_none());
        c.handle_timeout(t0 + Duration::from_millis(50));
        assert_eq!(c.poll_reply(r), Some(Err(RequestError::Expired)));
        assert_eq!(c.poll_timeout(), None);
        c.handle(PEER, None, &reply_to(r, b"late"));
        assert_eq!(message(&mut c).unwrap().data, b"late");
        assert_eq!((c.counters().late, c.counters().expired), (1, 1));
        assert!(c.outcomes.is_empty() && c.matcher.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_dropped_guard_forgets_the_request() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerOnly);
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_secs(5)).unwrap();
        drop(PendingRequest::new(&mut c, r));
        assert_eq!(c.poll_timeout(), None, "no longer waiting");
        c.handle(PEER, None, &reply_to(r, b"late"));
        assert!(c.poll_reply(r).is_none());
        assert_eq!(message(&mut c).unwrap().data, b"late");
        assert_eq!(c.counters().late, 1);

        // A reply that arrived but was not taken before the guard dropped is not lost either.
        let (_, r) = c.start_request(t0, ID, b"q2", 0, Duration::from_secs(5)).unwrap();
        let mut p = PendingRequest::new(&mut c, r);
        p.core().handle(PEER, None, &reply_to(r, b"unclaimed"));
        drop(p);
        assert!(c.outcomes.is_empty());
        assert_eq!(message(&mut c).unwrap().data, b"unclaimed");
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_it_drops() {
        let mut c = core(Trust::PeerOnly);
        c.set_queue_limit(3);
        for seq in 0..5 {
            c.handle(PEER, None, &msg(seq, 0, b"m"));
        }
        assert_eq!((c.counters().received, c.counters().dropped), (5, 2));
        // Replies are not queued, so a full queue never costs a request its reply.
        let (_, r) = c.start_request(Instant::now(), ID, b"q", 0, Duration::from_secs(1)).unwrap();
        c.handle(PEER, None, &reply_to(r, b"r"));
        assert_eq!(c.poll_reply(r).unwrap().unwrap().data, b"r");
        let seqs: Vec<u32> = std::iter::from_fn(|| message(&mut c)).map(|m| m.hdr.seq).collect();
        assert_eq!(seqs, [0, 1, 2], "the oldest are kept, in order");
    }

    #[test]
    fn an_overrun_is_an_item_and_requests_survive_it() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerOnly);
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_secs(1)).unwrap();
        c.handle(PEER, None, &msg(1, 0, b"before"));
        c.handle_overrun();
        c.handle_overrun();
        assert!(c.poll_reply(r).is_none(), "still waiting");
        c.handle(PEER, None, &reply_to(r, b"r"));
        assert_eq!(c.poll_reply(r).unwrap().unwrap().data, b"r");
        assert_eq!(message(&mut c).unwrap().data, b"before");
        assert_eq!(c.poll_item(), Some(ClientItem::Overrun), "two overruns in a row are one item");
        assert_eq!(c.poll_item(), None);
        assert_eq!(c.counters().overruns, 2);
        // Even with a full queue the overrun is reported.
        c.set_queue_limit(0);
        c.handle(PEER, None, &msg(2, 0, b"dropped"));
        c.handle_overrun();
        assert_eq!(c.poll_item(), Some(ClientItem::Overrun));
    }

    #[test]
    fn an_untrusted_uid_on_the_peer_port_fails_the_request() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerWithUids(vec![0, 1000]));
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_secs(1)).unwrap();
        // Another port, any uid: refused, but it cannot make our request fail.
        c.handle(NlAddr::port(77), creds(0), &reply_to(r, b"x"));
        assert!(c.poll_reply(r).is_none());
        // The peer's port without credentials, or with a uid outside the set: someone else holds it.
        c.handle(PEER, creds(65534), &reply_to(r, b"impostor"));
        let err = RequestError::Untrusted { port: PEER.port, creds: creds(65534) };
        assert_eq!(c.poll_reply(r), Some(Err(err)));
        assert_eq!(c.counters().rejected, 2);
        assert!(c.poll_item().is_none(), "nothing of theirs is queued");
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_secs(1)).unwrap();
        c.handle(PEER, None, &reply_to(r, b"no creds"));
        assert!(matches!(c.poll_reply(r), Some(Err(RequestError::Untrusted { creds: None, .. }))));
        // The trusted uid is answered.
        let (_, r) = c.start_request(t0, ID, b"q", 0, Duration::from_secs(1)).unwrap();
        c.handle(PEER, creds(1000), &reply_to(r, b"ok"));
        assert_eq!(c.poll_reply(r).unwrap().unwrap().data, b"ok");
    }

    #[test]
    fn a_bundle_is_one_datagram_shared_by_its_messages() {
        let mut c = core(Trust::Anyone);
        // One netlink message carrying two cn_msgs, as w1 sends with W1_CN_BUNDLE (spec §4.6).
        let first = msg(1, 0, b"one");
        let second = msg(2, 0, b"two!");
        let mut payload = first[16..16 + 20 + 3].to_vec();
        payload.extend_from_slice(&second[16..16 + 20 + 4]);
        let mut d = vec![0u8; 16];
        NlMsgHdr { len: (16 + payload.len()) as u32, ty: 0x1234, flags: 0, seq: 77, pid: 5 }.emit(&mut d).unwrap();
        d.extend_from_slice(&payload);
        c.handle(NlAddr::port(5), None, &d);
        let (a, b) = (message(&mut c).unwrap(), message(&mut c).unwrap());
        assert_eq!((&a.data[..], &b.data[..]), (&b"one"[..], &b"two!"[..]));
        assert!(Arc::ptr_eq(&a.datagram, &b.datagram));
        assert_eq!(&a.datagram[..], &d[..], "the datagram as received");
        assert_eq!((a.nl.ty, a.nl.seq), (0x1234, 77), "the real netlink header");
    }

    #[test]
    fn requests_waiting_are_bounded() {
        let t0 = Instant::now();
        let mut c = core(Trust::PeerOnly);
        let first = c.start_request(t0, ID, b"", 0, Duration::from_secs(1)).unwrap().1;
        for _ in 0..MAX_REQUESTS {
            c.start_request(t0, ID, b"", 0, Duration::from_secs(1)).unwrap();
        }
        assert_eq!(c.matcher.len(), MAX_REQUESTS);
        c.handle(PEER, None, &reply_to(first, b"late"));
        assert!(c.poll_reply(first).is_none(), "the oldest was forgotten");
        assert_eq!(c.counters().late, 1);
    }

    #[test]
    fn an_absurd_timeout_does_not_overflow() {
        let mut c = core(Trust::PeerOnly);
        let t0 = Instant::now();
        c.start_request(t0, ID, b"", 0, Duration::MAX).unwrap();
        assert!(c.poll_timeout().unwrap() > t0);
    }
}
