//! The `history` imports (`wit/history.wit`) as every world's guest calls
//! them: the WIT's records turned into [`crate::pubsub::history`]'s and
//! back, over the server's [`Topics`] and one connection's
//! [`Subscriptions`]. Which connections a guest may name is its world's
//! rule (an event route's sockets, a handler's own upgraded connection, a
//! coroutine's instance's connections, as for `topics`): each
//! world's host state says it as [`Subscribing`], and gets the imports.

use crate::bindings::wshost::websocket::history as wit;
use crate::bindings::{ConnectionId, Error};
use crate::pubsub::history::{self, Envelope, Position, Retention};
use crate::pubsub::topics::{self, Recovery, Subscriptions, Topics};
use std::time::Duration;

/// What a world's host state gives the `history` and `presence` imports:
/// the server's topics, and the subscriptions of the connections its guest
/// may name.
pub trait Subscribing: Send {
    fn topics(&self) -> &Topics;

    /// `f` on the subscriptions of connection `conn`, if this guest may
    /// name it.
    fn with_subscriptions<R>(
        &mut self,
        conn: ConnectionId,
        f: impl FnOnce(&mut Subscriptions) -> R,
    ) -> Result<R, Error>;
}

/// The `history` imports for a [`Subscribing`] host state (a blanket impl
/// would overlap the bindings' own for `&mut T`).
macro_rules! imports_for {
    ($state:ty) => {
        impl $crate::bindings::wshost::websocket::history::Host for $state {
            async fn keep(
                &mut self,
                topic: String,
                retention: $crate::bindings::wshost::websocket::history::Retention,
            ) -> Result<(), $crate::bindings::Error> {
                $crate::world::recover::keep(self, &topic, retention)
            }

            async fn current_position(
                &mut self,
                topic: String,
            ) -> Result<
                $crate::bindings::wshost::websocket::history::Position,
                $crate::bindings::Error,
            > {
                $crate::world::recover::current_position(self, &topic)
            }

            async fn subscribe_from(
                &mut self,
                conn: $crate::bindings::ConnectionId,
                topic: String,
                since: Option<$crate::bindings::wshost::websocket::history::Position>,
            ) -> Result<
                $crate::bindings::wshost::websocket::history::Recovery,
                $crate::bindings::Error,
            > {
                $crate::world::recover::subscribe_from(self, conn, &topic, since)
            }

            async fn read(
                &mut self,
                topic: String,
                after: u64,
                limit: u32,
            ) -> Result<$crate::bindings::wshost::websocket::history::Page, $crate::bindings::Error>
            {
                $crate::world::recover::read(self, &topic, after, limit)
            }
        }
    };
}
pub(crate) use imports_for;

/// `history.keep`.
pub fn keep(state: &impl Subscribing, topic: &str, retention: wit::Retention) -> Result<(), Error> {
    topics::check_name(topic)?;
    let retention = Retention {
        messages: retention.messages,
        max_age: (retention.seconds > 0).then(|| Duration::from_secs(retention.seconds.into())),
        envelope: match retention.envelope {
            wit::Envelope::None => Envelope::None,
            wit::Envelope::Json => Envelope::Json,
        },
    };
    Ok(state.topics().history().keep(topic, retention)?)
}

/// `history.current-position`.
pub fn current_position(state: &impl Subscribing, topic: &str) -> Result<wit::Position, Error> {
    let stream = state.topics().history().kept(topic)?;
    Ok(to_guest(history::lock(&stream).position()))
}

/// `history.subscribe-from`.
pub fn subscribe_from(
    state: &mut impl Subscribing,
    conn: ConnectionId,
    topic: &str,
    since: Option<wit::Position>,
) -> Result<wit::Recovery, Error> {
    let since = since.map(|p| Position {
        offset: p.offset,
        epoch: p.epoch.into(),
    });
    let recovered = state.with_subscriptions(conn, |subscriptions| {
        subscriptions.subscribe_from(topic, since.as_ref())
    })??;
    Ok(match recovered {
        Recovery::Recovered(n) => wit::Recovery::Recovered(n),
        Recovery::Reset(at) => wit::Recovery::Reset(to_guest(at)),
    })
}

/// `history.read`.
pub fn read(
    state: &impl Subscribing,
    topic: &str,
    after: u64,
    limit: u32,
) -> Result<wit::Page, Error> {
    let stream = state.topics().history().kept(topic)?;
    // Copied out of the lock: publishers to the topic wait on it.
    let mut stream = history::lock(&stream);
    let (kept, epoch) = (stream.read(after, limit), stream.position().epoch);
    drop(stream);
    let publications = kept
        .iter()
        .map(|kept| wit::Publication {
            offset: kept.offset,
            msg: kept.message(),
        })
        .collect();
    Ok(wit::Page {
        epoch: epoch.to_string(),
        publications,
    })
}

fn to_guest(at: Position) -> wit::Position {
    wit::Position {
        offset: at.offset,
        epoch: at.epoch.to_string(),
    }
}
