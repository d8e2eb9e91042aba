//! The async client (feature `tokio`): [`AsyncBusClient`], the twin of [`crate::BusClient`] on cnlink's
//! `AsyncConnector`.

use std::time::Duration;

use cnlink::socket::{NlAddr, Protocol};
use cnlink::tokio::AsyncConnector;
use cnlink::wire::{self, CbId, CnMsgHdr};
use cnlink::{MatchRule, OwnedMsg, Trust};

use crate::client::{decode_reply, ClientError};
use crate::wire::{BusOp, ListEntry, ListPage};

/// An async client of the bus.
#[derive(Debug)]
pub struct AsyncBusClient {
    conn: AsyncConnector,
    bus_port: u32,
    timeout: Duration,
}

impl AsyncBusClient {
    /// Opens a socket talking to the bus at `bus_port`. Needs a tokio runtime with IO enabled.
    pub fn connect(bus_port: u32) -> Result<AsyncBusClient, ClientError> {
        let conn = AsyncConnector::open_with(
            Protocol::Usersock,
            NlAddr::port(bus_port),
            MatchRule::Documented,
            Trust::PeerOnly,
        )?;
        Ok(AsyncBusClient { conn, bus_port, timeout: Duration::from_secs(2) })
    }

    async fn control(&mut self, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        let reply = self.conn.request(CbId::CONNECTOR, data, self.timeout).await?;
        decode_reply(&reply)
    }

    /// Registers `id` for this client. Not cancel safe: a dropped future may leave the id registered.
    pub async fn register(&mut self, id: CbId, name: &str) -> Result<(), ClientError> {
        self.control(&BusOp::Register { id, name: name.into() }.to_bytes()).await.map(drop)
    }

    /// Unregisters `id`.
    pub async fn unregister(&mut self, id: CbId) -> Result<(), ClientError> {
        self.control(&BusOp::Unregister { id }.to_bytes()).await.map(drop)
    }

    /// Subscribes to `group`.
    pub async fn join(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(&BusOp::Join { group }.to_bytes()).await.map(drop)
    }

    /// Every registered id (first page of up to 256).
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        Ok(ListPage::parse(&self.control(&BusOp::List { start: 0 }.to_bytes()).await?)?.entries)
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

    /// The next message that is not a reply. Cancel safe.
    pub async fn recv(&mut self) -> Result<OwnedMsg, ClientError> {
        Ok(self.conn.recv().await?)
    }

    /// Answers `msg`: same id and `seq`, `ack + 1`. Netlink sends never block.
    pub fn reply(&mut self, msg: &OwnedMsg, data: &[u8]) -> Result<(), ClientError> {
        let hdr = CnMsgHdr { ack: msg.hdr.ack.wrapping_add(1), len: 0, flags: 0, ..msg.hdr };
        let sock = self.conn.socket();
        let d = wire::datagram(hdr, data, sock.port_id().map_err(cnlink::Error::Io)?).map_err(cnlink::Error::Wire)?;
        sock.send_to(&d, NlAddr::port(self.bus_port)).map_err(cnlink::Error::Io)?;
        Ok(())
    }
}
