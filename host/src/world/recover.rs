//! The `history` imports (`wit/history.wit`) as every world's guest calls
//! them: the WIT's records turned into [`crate::pubsub::history`]'s and
//! back, over the server's [`Topics`] and one connection's
//! [`Subscriptions`]. Which connections a guest may name is its world's
//! rule (an event route's sockets, a handler's or a task's own), decided
//! by the caller.

use crate::bindings::Error;
use crate::bindings::wshost::websocket::history as wit;
use crate::pubsub::history::{self, Envelope, Position, Retention};
use crate::pubsub::topics::{self, Recovery, Subscriptions, Topics};
use std::time::Duration;

/// `history.keep`.
pub fn keep(topics: &Topics, topic: &str, retention: wit::Retention) -> Result<(), Error> {
    topics::check_name(topic)?;
    let retention = Retention {
        messages: retention.messages,
        max_age: (retention.seconds > 0).then(|| Duration::from_secs(retention.seconds.into())),
        envelope: match retention.envelope {
            wit::Envelope::None => Envelope::None,
            wit::Envelope::Json => Envelope::Json,
        },
    };
    Ok(topics.history().keep(topic, retention)?)
}

/// `history.current-position`.
pub fn current_position(topics: &Topics, topic: &str) -> Result<wit::Position, Error> {
    let stream = topics.history().kept(topic)?;
    Ok(to_guest(history::lock(&stream).position()))
}

/// `history.subscribe-from`, for the connection whose `subscriptions` these are.
pub fn subscribe_from(
    subscriptions: &mut Subscriptions,
    topic: &str,
    since: Option<wit::Position>,
) -> Result<wit::Recovery, Error> {
    let since = since.map(|p| Position {
        offset: p.offset,
        epoch: p.epoch.into(),
    });
    Ok(match subscriptions.subscribe_from(topic, since.as_ref())? {
        Recovery::Recovered(n) => wit::Recovery::Recovered(n),
        Recovery::Reset(at) => wit::Recovery::Reset(to_guest(at)),
    })
}

/// `history.read`.
pub fn read(topics: &Topics, topic: &str, after: u64, limit: u32) -> Result<wit::Page, Error> {
    let stream = topics.history().kept(topic)?;
    let mut stream = history::lock(&stream);
    let publications = stream
        .read(after, limit)
        .iter()
        .map(|kept| wit::Publication {
            offset: kept.offset,
            msg: kept.message(),
        })
        .collect();
    Ok(wit::Page {
        epoch: stream.position().epoch.to_string(),
        publications,
    })
}

fn to_guest(at: Position) -> wit::Position {
    wit::Position {
        offset: at.offset,
        epoch: at.epoch.to_string(),
    }
}
