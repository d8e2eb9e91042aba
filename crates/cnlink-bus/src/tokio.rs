//! The async client (feature `tokio`): [`AsyncBusClient`], the twin of [`crate::BusClient`] on cnlink's
//! `AsyncConnector`, with the same operations and the same seq/ack matching.

use std::time::Duration;

use cnlink::socket::{NlAddr, Protocol};
use cnlink::tokio::AsyncConnector;
use cnlink::wire::{CbId, CnMsgHdr};
use cnlink::{MatchRule, OwnedMsg, Trust};

use crate::client::{add_list_page, decode_reply, named_stats, ClientError, CLIENT_RECV_BUFFER};
use crate::wire::{self as bw, BusOp, CtlMsg, ListEntry};

/// An async client of the bus.
///
/// The control ops are not cancel safe: a dropped future may leave the op done by the bus without its answer.
#[derive(Debug)]
pub struct AsyncBusClient {
    conn: AsyncConnector,
    timeout: Duration,
}

impl AsyncBusClient {
    /// Opens a socket talking to the bus at `bus_port`, as [`crate::BusClient::connect`] does. Needs a tokio
    /// runtime with IO enabled.
    pub fn connect(bus_port: u32) -> Result<AsyncBusClient, ClientError> {
        let conn = AsyncConnector::open_with(
            Protocol::Usersock,
            NlAddr::port(bus_port),
            MatchRule::Documented,
            Trust::PeerOnly,
        )?;
        conn.socket().set_recv_buffer(CLIENT_RECV_BUFFER).map_err(cnlink::Error::Io)?;
        Ok(AsyncBusClient { conn, timeout: Duration::from_secs(2) })
    }

    /// How long control ops wait for the bus's answer (default 2 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying connector (its socket, counters).
    pub fn connector(&self) -> &AsyncConnector {
        &self.conn
    }

    /// This client's port id.
    pub fn port(&self) -> Result<u32, ClientError> {
        Ok(self.conn.socket().port())
    }

    async fn control(&mut self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self.conn.request(CbId::CONNECTOR, data, self.timeout).await?;
        decode_reply(&reply)
    }

    /// Registers `id` for this client: the bus forwards that id's messages here and relays the replies.
    pub async fn register(&mut self, id: CbId, name: &str) -> Result<(), ClientError> {
        self.control(&BusOp::Register { id, name: name.into() }.to_bytes()).await.map(drop)
    }

    /// Unregisters `id` (only its registrant, or root, may).
    pub async fn unregister(&mut self, id: CbId) -> Result<(), ClientError> {
        self.control(&BusOp::Unregister { id }.to_bytes()).await.map(drop)
    }

    /// Subscribes to `group` (any number but 0).
    pub async fn join(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(&BusOp::Join { group }.to_bytes()).await.map(drop)
    }

    /// Leaves `group`.
    pub async fn leave(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(&BusOp::Leave { group }.to_bytes()).await.map(drop)
    }

    /// Sends a message for `id` to `group` (0: the group of the id's owner), like `cn_netlink_send`. Allowed
    /// to root, to the id's registrant, and to users a `[[send]]` rule of the bus's policy names for it.
    pub async fn send_group(&mut self, group: u32, id: CbId, data: &[u8]) -> Result<(), ClientError> {
        let op = bw::send_op(group, CnMsgHdr { id, ..Default::default() }, data).map_err(cnlink::Error::Wire)?;
        self.control(&op).await.map(drop)
    }

    /// Sends a historical notification request (`cn_ctl_msg`), byte for byte as a 2.6.x client did.
    pub async fn notify(&mut self, req: &CtlMsg) -> Result<(), ClientError> {
        self.control(&req.to_bytes()).await.map(drop)
    }

    /// Every registered id, in registration order (the `/proc/net/connector` equivalent).
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        let mut all = Vec::new();
        loop {
            let page = self.control(&BusOp::List { start: all.len() as u32 }.to_bytes()).await?;
            if add_list_page(&mut all, &page)? {
                return Ok(all);
            }
        }
    }

    /// The daemon's counters, named as in [`crate::Stats::NAMES`].
    pub async fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        named_stats(&self.control(&BusOp::Stats.to_bytes()).await?)
    }

    /// Sends `data` to `id` and waits for the reply (same `seq`, `ack + 1`). A dropped future forgets the
    /// request; its late reply then arrives through [`AsyncBusClient::recv`].
    pub async fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, ClientError> {
        let reply = self.conn.request(id, data, timeout).await?;
        if reply.hdr.id == CbId::CONNECTOR && id != CbId::CONNECTOR {
            decode_reply(&reply)?;
        }
        Ok(reply)
    }

    /// Sends `data` to `id` without waiting; returns the `(seq, ack)` it carried. Netlink sends never block.
    pub fn send(&mut self, id: CbId, data: &[u8]) -> Result<(u32, u32), ClientError> {
        Ok(self.conn.send(id, data)?)
    }

    /// Sends a message with a header of the caller's choosing.
    pub fn send_raw(&mut self, hdr: CnMsgHdr, data: &[u8]) -> Result<(), ClientError> {
        Ok(self.conn.send_raw(hdr, data)?)
    }

    /// Answers `msg` with the documents' rule: same id and `seq`, `ack + 1`.
    pub fn reply(&mut self, msg: &OwnedMsg, data: &[u8]) -> Result<(), ClientError> {
        self.send_raw(msg.hdr.reply(), data)
    }

    /// The next message that is not a reply (forwarded requests, group messages, notifications). Cancel safe.
    pub async fn recv(&mut self) -> Result<OwnedMsg, ClientError> {
        Ok(self.conn.recv().await?)
    }
}
