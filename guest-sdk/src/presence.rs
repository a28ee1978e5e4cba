//! Presence: who is in a topic. A connection that joins a topic is
//! subscribed to it and listed with the info its guest gave (a user name,
//! a small JSON object) until it leaves (unsubscribes, or its connection
//! ends). With notices on, the topic's subscribers get
//! `{"join":{"conn":N,"info":"..."}}` and `{"leave":{"conn":N}}` text frames.
//!
//! ```no_run
//! use wshost_guest::events::{Handler, Message, Socket};
//! use wshost_guest::presence;
//!
//! struct Room;
//!
//! impl Handler for Room {
//!     fn open(ws: Socket) {
//!         presence::notices("room", true).expect("a valid topic");
//!         ws.join("room", "a guest").expect("a valid topic");
//!     }
//!     fn message(ws: Socket, _msg: Message) {
//!         let who: Vec<String> = presence::members("room", None, 100)
//!             .into_iter()
//!             .map(|m| m.info)
//!             .collect();
//!         let _ = ws.send(who.join(", "));
//!     }
//! }
//!
//! wshost_guest::export_events!(Room);
//! ```

use crate::bindings::wshost::websocket::presence as host;
use crate::{ConnectionId, Result};

pub use host::Member;

/// Up to `limit` (at most 1,000) members of `topic` after connection
/// `after`, by id.
pub fn members(topic: &str, after: Option<ConnectionId>, limit: u32) -> Vec<Member> {
    host::members(topic, after, limit)
}

/// How many members `topic` has.
pub fn count(topic: &str) -> u32 {
    host::count(topic)
}

/// Send `topic`'s subscribers join and leave notices from now on (or stop).
pub fn notices(topic: &str, on: bool) -> Result<()> {
    host::notices(topic, on)
}

pub(crate) fn join(conn: ConnectionId, topic: &str, info: &str) -> Result<bool> {
    host::join(conn, topic, info)
}
