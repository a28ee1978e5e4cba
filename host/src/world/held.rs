//! Messages a handler-world guest received and left with the host (the
//! `messages` import): `recv` hands out a handle, the payload stays in the
//! host, and `push` hands it back without copying it into the guest (a
//! large payload goes out as it came in; `send-to`, `broadcast` and
//! `publish` frame it once, as they frame any message). A guest that
//! forwards an 8 MiB message then never grows its linear memory, which an
//! instance keeps for life.
//!
//! Bounds, per connection: at most [`MAX_HELD`] messages, and a `recv` is
//! refused once the held payloads reach `--max-message-size` (so under
//! twice that is held); a refused `recv` leaves the message in the inbox.
//! A held message is the guest's, as one copied into its memory would be:
//! its share of the in-flight budget goes back when it is taken, and a
//! small payload is copied out of the read buffer it shares with others.
//! All goes when the guest drops it or the connection ends.

use crate::bindings::wshost::websocket::messages::{self, Incoming};
use crate::bindings::{ConnectionId, Error, Opcode};
use crate::wasm::sandbox;
use crate::world::conn::{self, Conn};
use crate::ws::frame::{self, Kind};
use crate::ws::inbox::Delivery;
use bytes::Bytes;
use std::time::Duration;
use wasmtime::component::{Resource, ResourceTable};

/// Messages one guest may hold at once.
pub const MAX_HELD: usize = 64;

/// Payloads shorter than this are copied out of the read buffer they were
/// sliced from (at least 8 KiB, shared with the messages read with them),
/// so a few held bytes do not keep a whole buffer alive.
const COPY_BELOW: usize = 4 << 10;

/// A received message, held by the host for its guest.
pub struct HeldMessage {
    data: Bytes,
    text: bool,
}

/// The messages one connection's guest holds.
#[derive(Default)]
pub struct HeldMessages {
    table: ResourceTable,
    /// How many: at most [`MAX_HELD`].
    count: usize,
    /// Their payloads' bytes.
    bytes: usize,
}

impl HeldMessages {
    fn get(&self, msg: &Resource<HeldMessage>) -> Result<&HeldMessage, Error> {
        // wasmtime checks a guest's handles: a miss is the host's bug.
        self.table
            .get(msg)
            .map_err(|e| Error::Protocol(format!("no such message: {e}")))
    }

    fn hold(&mut self, data: Bytes, text: bool) -> Result<Incoming, Error> {
        let data = match data.len() < COPY_BELOW {
            true => Bytes::copy_from_slice(&data),
            false => data,
        };
        let len = data.len();
        let handle = self.table.push(HeldMessage { data, text });
        let handle = handle.map_err(|e| Error::Protocol(format!("cannot hold it: {e}")))?;
        self.count += 1;
        self.bytes += len;
        Ok(Incoming::Message(handle))
    }

    /// Why a `recv` is refused now, if it is.
    fn refusal(&self, max_bytes: usize) -> Option<Error> {
        let why = if self.count >= MAX_HELD {
            format!("{MAX_HELD} messages")
        } else if self.bytes >= max_bytes {
            format!("{} bytes of messages (--max-message-size)", self.bytes)
        } else {
            return None;
        };
        Some(Error::Protocol(format!(
            "the handler holds {why}: drop one before receiving another"
        )))
    }
}

impl HeldMessage {
    fn kind(&self) -> Kind {
        if self.text { Kind::Text } else { Kind::Binary }
    }

    /// The whole message framed, for the hub and topics.
    fn framed(&self) -> Bytes {
        frame::encode(self.kind(), true, &self.data)
    }
}

impl messages::HostMessage for Conn {
    async fn opcode(&mut self, msg: Resource<HeldMessage>) -> Opcode {
        match self.held.get(&msg) {
            Ok(m) if m.text => Opcode::Text,
            _ => Opcode::Binary,
        }
    }

    async fn len(&mut self, msg: Resource<HeldMessage>) -> u64 {
        self.held.get(&msg).map_or(0, |m| m.data.len() as u64)
    }

    async fn read(&mut self, msg: Resource<HeldMessage>, offset: u64, len: u32) -> Vec<u8> {
        let Ok(m) = self.held.get(&msg) else {
            return Vec::new();
        };
        let start = usize::try_from(offset).map_or(m.data.len(), |o| o.min(m.data.len()));
        let end = start.saturating_add(len as usize).min(m.data.len());
        m.data[start..end].to_vec()
    }

    async fn drop(&mut self, msg: Resource<HeldMessage>) -> wasmtime::Result<()> {
        let gone = self.held.table.delete(msg)?;
        self.held.count -= 1;
        self.held.bytes -= gone.data.len();
        Ok(())
    }
}

impl messages::Host for Conn {
    async fn recv(&mut self, timeout_ms: Option<u32>) -> Result<Option<Incoming>, Error> {
        if let Some(refused) = self.held.refusal(self.max_message_size()) {
            return Err(refused);
        }
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let (received, suspended) = sandbox::suspends(self.recv_delivery(timeout)).await;
        self.note_waited(suspended || matches!(received, Ok(Some(_))));
        let incoming = match received? {
            None => return Ok(None),
            // Its in-flight budget share (`_budget`) goes back here: the
            // message is the guest's now, bounded as held messages are.
            Some(Delivery::Message(tungstenite::Message::Text(text), _budget)) => {
                self.held.hold(Bytes::from(text), true)?
            }
            Some(Delivery::Message(msg, _budget)) => self.held.hold(msg.into_data(), false)?,
            Some(Delivery::Close(close)) => Incoming::Close(close),
            Some(Delivery::Failed(error)) => return Err(error),
        };
        Ok(Some(incoming))
    }

    async fn push(&mut self, msg: Resource<HeldMessage>) -> Result<(), Error> {
        let m = self.held.get(&msg)?;
        let (data, text) = (m.data.clone(), m.text);
        let done = sandbox::suspends(self.push_held(data, text)).await;
        self.waited_if(done)
    }

    async fn send_to(
        &mut self,
        target: ConnectionId,
        msg: Resource<HeldMessage>,
    ) -> Result<(), Error> {
        let frame = self.held.get(&msg)?.framed();
        conn::hub_send_framed(&self.hub, &self.topics, target, frame)
    }

    async fn broadcast(&mut self, msg: Resource<HeldMessage>) -> Result<u32, Error> {
        Ok(self.hub.broadcast(&self.held.get(&msg)?.framed()))
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Resource<HeldMessage>,
        exclude: Option<ConnectionId>,
    ) -> Result<u32, Error> {
        let frame = self.held.get(&msg)?.framed();
        Ok(self.topics.publish_framed(&topic, &frame, exclude))
    }
}
