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
use crate::pubsub::topics::{self, Recovery, Step, Subscriptions, Topics};
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
                $crate::world::recover::current_position(self, &topic).await
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
                $crate::world::recover::subscribe_from(self, conn, &topic, since).await
            }

            async fn read(
                &mut self,
                topic: String,
                after: u64,
                limit: u32,
            ) -> Result<$crate::bindings::wshost::websocket::history::Page, $crate::bindings::Error>
            {
                $crate::world::recover::read(self, &topic, after, limit).await
            }
        }
    };
}
pub(crate) use imports_for;

/// `history.keep` (with `--cluster` too: each process keeps a topic as its
/// own guests or `[[history]]` rules say, the store keeps every process's
/// publishes).
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

/// The stream of `topic` a guest names: its name checked as a subscribe's
/// is (a `[[history]]` rule would start a stream for any name it covers).
fn kept(
    state: &mut impl Subscribing,
    topic: &str,
) -> Result<std::sync::Arc<std::sync::Mutex<history::Stream>>, Error> {
    topics::check_name(topic)?;
    Ok(state.topics().history().kept(topic)?)
}

/// `history.current-position`.
pub async fn current_position(
    state: &mut impl Subscribing,
    topic: &str,
) -> Result<wit::Position, Error> {
    let stream = kept(state, topic)?;
    let Some(relay) = state.topics().relay() else {
        return Ok(to_guest(history::lock(&stream).position()));
    };
    let read = history::lock(&stream).store_read(None, 0, 0);
    let page = relay.read(topic, &read).await.map_err(store_failed)?;
    Ok(wit::Position {
        offset: page.top,
        epoch: page.epoch.to_string(),
    })
}

/// `history.subscribe-from`. With `--cluster`, a recovery this process
/// cannot answer reads the store first (the guest waits for it).
pub async fn subscribe_from(
    state: &mut impl Subscribing,
    conn: ConnectionId,
    topic: &str,
    since: Option<wit::Position>,
) -> Result<wit::Recovery, Error> {
    let since = since.map(|p| Position {
        offset: p.offset,
        epoch: p.epoch.into(),
    });
    let mut page = None;
    let recovered = loop {
        let step = state.with_subscriptions(conn, |subscriptions| {
            subscriptions.subscribe_from(topic, since.as_ref(), page.as_ref())
        })??;
        match (step, state.topics().relay()) {
            (Step::Done(recovered), _) => break recovered,
            (Step::Read(_), _) if page.is_some() => {
                return Err(Error::Protocol("history: a read that did not end".into()));
            }
            (Step::Read(_), None) => unreachable!("a read is asked for with --cluster only"),
            (Step::Read(read), Some(relay)) => {
                let read = relay.read(topic, &read).await;
                page = Some(read.map_err(store_failed)?);
            }
        }
    };
    Ok(match recovered {
        Recovery::Recovered(n) => wit::Recovery::Recovered(n),
        Recovery::Reset(at) => wit::Recovery::Reset(to_guest(at)),
    })
}

/// `topics.subscribe` as every world's guest calls it. With `--cluster`, a
/// topic that keeps history is subscribed as `subscribe-from` with no
/// position does it (the store's position read first if this process's
/// mirror does not follow it), so a message published after the call
/// returns reaches this connection even before this process's Redis
/// subscription takes effect. While Redis cannot be read it is a plain
/// subscribe (the live stream as this process gets it).
pub async fn subscribe(
    state: &mut impl Subscribing,
    conn: ConnectionId,
    topic: &str,
) -> Result<bool, Error> {
    topics::check_name(topic)?;
    let kept = state.topics().relay().is_some() && state.topics().history().stream(topic).is_some();
    if kept && !state.with_subscriptions(conn, |s| s.is_subscribed(topic))? {
        match subscribe_from(state, conn, topic, None).await {
            Ok(_) => return Ok(true),
            // Redis unreachable (or the stream let go meanwhile): subscribed
            // from the live stream as this process gets it, as a plain
            // topic is; the catch-up after Redis is back follows it.
            Err(Error::Protocol(why)) if why.starts_with(STORE_FAILED) => {
                tracing::warn!("subscribe {topic:?}: {why}: from the live stream on")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(state.with_subscriptions(conn, |s| s.subscribe(topic))??)
}

/// `history.read`.
pub async fn read(
    state: &mut impl Subscribing,
    topic: &str,
    after: u64,
    limit: u32,
) -> Result<wit::Page, Error> {
    let stream = kept(state, topic)?;
    let limit = limit.min(history::MAX_READ);
    let (publications, epoch) = match state.topics().relay() {
        None => {
            // Copied out of the lock: publishers to the topic wait on it.
            let mut stream = history::lock(&stream);
            let kept = stream.read(after, limit);
            let epoch = stream.position().epoch;
            drop(stream);
            let publications = kept.iter().map(|k| publication(k.offset, k.message()));
            (publications.collect(), epoch)
        }
        Some(relay) => {
            let read =
                history::lock(&stream).store_read(Some(after), limit, history::MAX_READ_BYTES);
            let page = relay.read(topic, &read).await.map_err(store_failed)?;
            let fresh = history::lock(&stream).fresh(&page.entries).len();
            let kept = &page.entries[page.entries.len() - fresh..];
            let publications = kept.iter().map(|e| publication(e.offset, e.message()));
            (publications.collect(), page.epoch)
        }
    };
    Ok(wit::Page {
        epoch: epoch.to_string(),
        publications,
    })
}

fn publication(offset: u64, msg: crate::bindings::Message) -> wit::Publication {
    wit::Publication { offset, msg }
}

/// The cluster's store could not be read.
fn store_failed(why: String) -> Error {
    Error::Protocol(format!("{STORE_FAILED}: {why}"))
}

const STORE_FAILED: &str = "history: the cluster's store";

fn to_guest(at: Position) -> wit::Position {
    wit::Position {
        offset: at.offset,
        epoch: at.epoch.to_string(),
    }
}
