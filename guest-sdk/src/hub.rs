//! Reach the other live connections of this handler's route.
//!
//! Messages are queued to the target connection and written by its own host
//! task, so a slow peer never blocks the sender.

use crate::bindings::wshost::websocket::hub as host;
use crate::{ConnectionId, Opcode, Result};

/// Ids of the open, upgraded connections of this route, this one included.
pub fn connections() -> Vec<ConnectionId> {
    host::connections()
}

/// Queue a whole message to one connection.
pub fn send_to(target: ConnectionId, data: &[u8], opcode: Opcode) -> Result<()> {
    host::send_to(target, data, opcode)
}

/// Queue a text message to one connection.
pub fn send_text(target: ConnectionId, text: &str) -> Result<()> {
    host::send_to(target, text.as_bytes(), Opcode::Text)
}

/// Queue a whole message to every live connection of this route (this one
/// included); returns how many accepted it.
pub fn broadcast(data: &[u8], opcode: Opcode) -> Result<u32> {
    host::broadcast(data, opcode)
}

/// Queue a text message to every live connection of this route.
pub fn broadcast_text(text: &str) -> Result<u32> {
    host::broadcast(text.as_bytes(), Opcode::Text)
}
