//! Topic history and recovery, in every world: a topic that keeps history
//! numbers every message published to it (an offset counting up by one,
//! and the epoch of its stream), keeps the last ones, and lets a socket
//! subscribe *from* a position it saw, getting what it missed, then the
//! live messages, with no gap and no duplicate. A handler recovers its own
//! connection ([`crate::Connection::subscribe_from`]), a coroutine its
//! ([`crate::coro::Connection::subscribe_from`]), an event handler any of
//! its route's sockets ([`crate::events::Socket::subscribe_from`]).
//!
//! ```no_run
//! use wshost_guest::events::{Handler, Message, Socket};
//! use wshost_guest::history::{self, Position, Retention};
//!
//! struct Feed;
//!
//! impl Handler for Feed {
//!     fn open(ws: Socket) {
//!         // Each message reaches subscribers as {"offset":N,"epoch":"E","text":"..."}.
//!         history::keep("feed", Retention::last(10_000).json()).expect("a valid topic");
//!         let since = None::<Position>; // a position the client sent back
//!         ws.subscribe_from("feed", since.as_ref()).expect("a kept topic");
//!     }
//!     fn message(_ws: Socket, msg: Message) {
//!         let _ = wshost_guest::topics::publish("feed", msg);
//!     }
//! }
//!
//! wshost_guest::export_events!(Feed);
//! ```

use crate::Result;
use crate::bindings::wshost::websocket::history as host;

pub use host::{Envelope, Page, Position, Publication, Recovery};

/// What a topic keeps, and how its messages reach subscribers.
#[derive(Debug, Clone, Copy)]
pub struct Retention(host::Retention);

impl Retention {
    /// The last `messages` messages (1 to 1,000,000), delivered as published.
    pub fn last(messages: u32) -> Self {
        Retention(host::Retention {
            messages,
            seconds: 0,
            envelope: Envelope::None,
        })
    }

    /// None older than `seconds`.
    pub fn for_seconds(mut self, seconds: u32) -> Self {
        self.0.seconds = seconds;
        self
    }

    /// Each message delivered as a text frame holding
    /// `{"offset":N,"epoch":"E","text":"..."}` (binary: `"binary":"<base64>"`),
    /// and a recovery that cannot be made told with `{"reset":true,"epoch":"E"}`.
    pub fn json(mut self) -> Self {
        self.0.envelope = Envelope::Json;
        self
    }
}

/// Keep `topic`'s history from now on (again: change how).
pub fn keep(topic: &str, retention: Retention) -> Result<()> {
    host::keep(topic, retention.0)
}

/// Where `topic`'s stream is: its last message's position.
pub fn current_position(topic: &str) -> Result<Position> {
    host::current_position(topic)
}

/// Up to `limit` (at most 1,000) kept messages after offset `after`.
pub fn read(topic: &str, after: u64, limit: u32) -> Result<Page> {
    host::read(topic, after, limit)
}

impl Position {
    pub fn new(offset: u64, epoch: impl Into<String>) -> Self {
        Position {
            offset,
            epoch: epoch.into(),
        }
    }
}

pub(crate) fn subscribe_from(
    conn: crate::ConnectionId,
    topic: &str,
    since: Option<&Position>,
) -> Result<Recovery> {
    host::subscribe_from(conn, topic, since)
}
