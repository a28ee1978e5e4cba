//! Topics, kept by the host and shared by every route of both worlds: a
//! handler subscribes its own connection ([`crate::Connection::subscribe`]),
//! an event handler any of its sockets ([`crate::events::Socket::subscribe`]).

use crate::bindings::wshost::websocket::event_types::Message;
use crate::bindings::wshost::websocket::topics as host;
use crate::{ConnectionId, Result};

/// Queue `msg` to every subscriber of `topic` (Bun's `server.publish`);
/// returns how many took it.
pub fn publish(topic: &str, msg: impl Into<Message>) -> Result<u32> {
    host::publish(topic, &msg.into(), None)
}

/// Queue `msg` to every subscriber of `topic` but `exclude`.
pub fn publish_except(topic: &str, msg: impl Into<Message>, exclude: ConnectionId) -> Result<u32> {
    host::publish(topic, &msg.into(), Some(exclude))
}

/// How many connections are subscribed to `topic`.
pub fn subscribers(topic: &str) -> u32 {
    host::subscribers(topic)
}

pub(crate) fn subscribe(conn: ConnectionId, topic: &str) -> Result<bool> {
    host::subscribe(conn, topic)
}

pub(crate) fn unsubscribe(conn: ConnectionId, topic: &str) -> Result<bool> {
    host::unsubscribe(conn, topic)
}
