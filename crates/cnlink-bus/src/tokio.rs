//! The async client (feature `tokio`): [`AsyncBusClient`], the twin of [`crate::BusClient`] on cnlink's
//! `AsyncConnector`, with the same operations ([`crate::ops`]), trust, seq/ack matching and errors.

use std::time::Duration;

use cnlink::tokio::AsyncConnector;
use cnlink::wire::{CbId, CnMsgHdr};
use cnlink::{ClientCounters, ClientItem, OwnedMsg};

use crate::ops::{self, ClientError, ControlOp, CLIENT_RECV_BUFFER};
use crate::wire::{CtlMsg, ListEntry};

/// An async client of the bus.
///
/// A dropped request or control-op future forgets its request (a late reply then arrives through
/// [`AsyncBusClient::recv`]); a control op may have been done by the bus all the same.
#[derive(Debug)]
pub struct AsyncBusClient {
    conn: AsyncConnector,
    timeout: Duration,
}

impl AsyncBusClient {
    /// Opens a socket talking to the bus at `bus_port`, as [`crate::BusClient::connect`] does. Needs a tokio
    /// runtime with IO enabled.
    pub fn connect(bus_port: u32) -> Result<AsyncBusClient, ClientError> {
        let (protocol, peer, rule, trust) = ops::connector_params(bus_port, &ops::default_bus_uids());
        let conn = AsyncConnector::open_with(protocol, peer, rule, trust)?;
        conn.socket().set_recv_buffer(CLIENT_RECV_BUFFER).map_err(cnlink::Error::Io)?;
        Ok(AsyncBusClient { conn, timeout: Duration::from_secs(2) })
    }

    /// Accepts datagrams from the bus's port only when they come from one of `uids`, as
    /// [`crate::BusClient::set_bus_uids`].
    pub fn set_bus_uids(&mut self, uids: &[u32]) {
        self.conn.core_mut().set_trust(ops::trust(uids));
    }

    /// How long control ops wait for the bus's answer (default 2 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The underlying connector (its socket, core and counters).
    pub fn connector(&self) -> &AsyncConnector {
        &self.conn
    }

    /// The underlying connector, to change its queue bound, say.
    pub fn connector_mut(&mut self) -> &mut AsyncConnector {
        &mut self.conn
    }

    /// The client's counters: overruns, datagrams rejected (not the bus), ...
    pub fn counters(&self) -> ClientCounters {
        self.conn.counters()
    }

    /// This client's port id.
    pub fn port(&self) -> u32 {
        self.conn.socket().port()
    }

    /// Runs one control op to its end, as [`crate::BusClient::control`].
    pub async fn control<O: ControlOp>(&mut self, mut op: O) -> Result<O::Output, ClientError> {
        loop {
            let reply = self.conn.request(CbId::CONNECTOR, &op.request(), self.timeout).await?;
            if let Some(out) = op.on_reply(&reply)? {
                return Ok(out);
            }
        }
    }

    /// Registers `id` for this client, as [`crate::BusClient::register`].
    pub async fn register(&mut self, id: CbId, name: &str) -> Result<(), ClientError> {
        self.control(ops::register(id, name)).await
    }

    /// Unregisters `id`.
    pub async fn unregister(&mut self, id: CbId) -> Result<(), ClientError> {
        self.control(ops::unregister(id)).await
    }

    /// Subscribes to `group`.
    pub async fn join(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(ops::join(group)).await
    }

    /// Leaves `group`.
    pub async fn leave(&mut self, group: u32) -> Result<(), ClientError> {
        self.control(ops::leave(group)).await
    }

    /// Sends a message for `id` to `group`, as [`crate::BusClient::send_group`].
    pub async fn send_group(&mut self, group: u32, id: CbId, data: &[u8]) -> Result<(), ClientError> {
        self.control(ops::send_group(group, id, data)?).await
    }

    /// Sends a historical notification request (`cn_ctl_msg`).
    pub async fn notify(&mut self, req: &CtlMsg) -> Result<(), ClientError> {
        self.control(ops::notify(req)).await
    }

    /// Every registered id, in registration order.
    pub async fn list(&mut self) -> Result<Vec<ListEntry>, ClientError> {
        self.control(ops::list()).await
    }

    /// The daemon's counters, named as in [`crate::BusCounters::NAMES`].
    pub async fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        self.control(ops::stats()).await
    }

    /// Sends `data` to `id` and waits for the reply, as [`crate::BusClient::request`].
    pub async fn request(&mut self, id: CbId, data: &[u8], timeout: Duration) -> Result<OwnedMsg, ClientError> {
        ops::message_reply(id, self.conn.request(id, data, timeout).await?)
    }

    /// Sends `data` to `id` without waiting; returns the `(seq, ack)` it carried.
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

    /// The next message that is not a reply, or an overrun. Cancel safe.
    pub async fn recv(&mut self) -> Result<ClientItem, ClientError> {
        Ok(self.conn.recv().await?)
    }
}
