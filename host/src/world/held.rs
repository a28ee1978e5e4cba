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
//!
//! This is the store of held messages; the `messages` calls themselves are
//! answered by the connection (`world::conn`).

use crate::bindings::wshost::websocket::messages::Incoming;
use crate::bindings::{Error, HeldMessage};
use crate::ws::frame::{self, Kind};
use crate::ws::inbox::Delivery;
use bytes::Bytes;
use wasmtime::component::{Resource, ResourceTable};

/// Messages one guest may hold at once.
pub const MAX_HELD: usize = 64;

/// Payloads shorter than this are copied out of the read buffer they were
/// sliced from (at least 8 KiB, shared with the messages read with them),
/// so a few held bytes do not keep a whole buffer alive.
const COPY_BELOW: usize = 4 << 10;

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
    pub(super) fn get(&self, msg: &Resource<HeldMessage>) -> Result<&HeldMessage, Error> {
        // wasmtime checks a guest's handles: a miss is the host's bug.
        self.table
            .get(msg)
            .map_err(|e| Error::Protocol(format!("no such message: {e}")))
    }

    /// What `messages.recv` hands out for `delivery`: a message is held
    /// (its in-flight budget share given back: it is the guest's now,
    /// bounded as held messages are).
    pub(super) fn take(&mut self, delivery: Delivery) -> Result<Incoming, Error> {
        match delivery {
            Delivery::Message(tungstenite::Message::Text(text), _budget) => {
                self.hold(Bytes::from(text), true)
            }
            Delivery::Message(msg, _budget) => self.hold(msg.into_data(), false),
            Delivery::Close(close) => Ok(Incoming::Close(close)),
            Delivery::Failed(error) => Err(error),
        }
    }

    /// The guest dropped `msg`.
    pub(super) fn release(&mut self, msg: Resource<HeldMessage>) -> wasmtime::Result<()> {
        let gone = self.table.delete(msg)?;
        self.count -= 1;
        self.bytes -= gone.data.len();
        Ok(())
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
    pub(super) fn refusal(&self, max_bytes: usize) -> Option<Error> {
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
    pub(super) fn framed(&self) -> Bytes {
        frame::encode(self.kind(), true, &self.data)
    }

    /// Up to `len` bytes of the payload from `offset`: fewer at its end,
    /// none from it on.
    pub(super) fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        let size = self.data.len();
        let start = usize::try_from(offset).map_or(size, |o| o.min(size));
        let end = start.saturating_add(len as usize).min(size);
        self.data[start..end].to_vec()
    }
}
