//! Server frames (`wshost_proto::frame`, re-exported), and a guest's whole
//! message framed with the size limit the host enforces.

pub use wshost_proto::frame::*;

use crate::bindings::{Error, Message};
use bytes::Bytes;

/// A guest message's kind and payload.
pub fn parts(msg: &Message) -> (Kind, &[u8]) {
    match msg {
        Message::Text(text) => (Kind::Text, text.as_bytes()),
        Message::Binary(data) => (Kind::Binary, data.as_slice()),
    }
}

/// A guest message's payload size.
pub fn payload_len(msg: &Message) -> usize {
    parts(msg).1.len()
}

/// A whole event-world or topic message, framed; `too-large` past `max` bytes.
pub fn message(msg: &Message, max: usize) -> Result<Bytes, Error> {
    let (kind, payload) = parts(msg);
    if payload.len() > max {
        return Err(Error::TooLarge);
    }
    Ok(encode(kind, true, payload))
}
