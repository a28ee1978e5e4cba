//! Messages left with the host: [`Connection::recv_message`] hands out a
//! [`Message`] whose payload stays in the host, read in slices when needed,
//! and [`Connection::push_message`], [`Message::send_to`],
//! [`Message::broadcast`] and [`Message::publish`] hand it back without
//! copying it into this instance. A handler that forwards large messages should use these: a
//! message [`Connection::recv`] copies into the instance's memory keeps
//! that memory for the instance's life (wasm memory never shrinks).
//!
//! ```no_run
//! use wshost_guest::messages::Incoming;
//! use wshost_guest::{Connection, Error, Request};
//!
//! fn mirror(_req: Request, ws: Connection) -> Result<(), Error> {
//!     ws.upgrade()?;
//!     while let Some(Incoming::Message(msg)) = ws.recv_message(None)? {
//!         ws.push_message(&msg)?; // 8 MiB or 8 bytes: never copied in here
//!     }
//!     Ok(())
//! }
//! # wshost_guest::export_handler!(mirror);
//! ```
//!
//! [`Connection::recv_message`]: crate::Connection::recv_message
//! [`Connection::push_message`]: crate::Connection::push_message
//! [`Connection::recv`]: crate::Connection::recv

use crate::bindings::wshost::websocket::messages as host;
use crate::{CloseInfo, ConnectionId, Opcode, Result};

/// What [`crate::Connection::recv_message`] hands out.
#[derive(Debug)]
pub enum Incoming {
    /// A whole text or binary message, held by the host.
    Message(Message),
    /// The peer's Close frame (or the host's 1001 at shutdown); the host
    /// completes the closing handshake.
    Close(Option<CloseInfo>),
}

/// A received message the host holds until this is dropped. A handler
/// holds at most 64 at once, and `recv_message` is refused while the held
/// payloads reach the route's message size limit: drop them when done.
#[derive(Debug)]
pub struct Message {
    handle: host::Message,
}

/// The slice [`Message::bytes`] reads at a time.
const SLICE: u32 = 64 << 10;

impl Message {
    /// [`Opcode::Text`] or [`Opcode::Binary`].
    pub fn opcode(&self) -> Opcode {
        self.handle.opcode()
    }

    /// True for a text message (the host has checked it is UTF-8).
    pub fn is_text(&self) -> bool {
        self.opcode() == Opcode::Text
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> u64 {
        self.handle.len()
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes of the payload from byte `offset` (fewer at its end).
    pub fn read(&self, offset: u64, len: u32) -> Vec<u8> {
        self.handle.read(offset, len)
    }

    /// The whole payload, copied into this instance's memory.
    pub fn bytes(&self) -> Vec<u8> {
        let len = self.len();
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        while (out.len() as u64) < len {
            let slice = self.read(out.len() as u64, SLICE);
            if slice.is_empty() {
                break;
            }
            out.extend_from_slice(&slice);
        }
        out
    }

    /// The payload as text, for a text message.
    pub fn text(&self) -> Option<String> {
        self.is_text()
            .then(|| String::from_utf8(self.bytes()).ok())
            .flatten()
    }

    /// Queue it whole to connection `target` of this route (`hub.send-to`).
    pub fn send_to(&self, target: ConnectionId) -> Result<()> {
        host::send_to(target, &self.handle)
    }

    /// Queue it to every live connection of this route, this one included;
    /// returns how many accepted it.
    pub fn broadcast(&self) -> Result<u32> {
        host::broadcast(&self.handle)
    }

    /// Queue it to every subscriber of `topic` but `exclude`; returns how
    /// many took it.
    pub fn publish(&self, topic: &str, exclude: Option<ConnectionId>) -> Result<u32> {
        host::publish(topic, &self.handle, exclude)
    }
}

pub(crate) fn recv(timeout_ms: Option<u32>) -> Result<Option<Incoming>> {
    Ok(host::recv(timeout_ms)?.map(|incoming| match incoming {
        host::Incoming::Message(handle) => Incoming::Message(Message { handle }),
        host::Incoming::Close(close) => Incoming::Close(close),
    }))
}

pub(crate) fn push(msg: &Message) -> Result<()> {
    host::push(&msg.handle)
}
