//! The `presence` imports (`wit/presence.wit`) as every world's guest calls
//! them, over the server's [`crate::pubsub::presence`] and one connection's
//! subscriptions; which connections a guest may name is its world's rule,
//! as for history ([`crate::world::recover::Subscribing`]).

use crate::bindings::wshost::websocket::presence as wit;
use crate::bindings::{ConnectionId, Error};
use crate::world::recover::Subscribing;

/// The `presence` imports for a [`Subscribing`] host state.
macro_rules! imports_for {
    ($state:ty) => {
        impl $crate::bindings::wshost::websocket::presence::Host for $state {
            async fn join(
                &mut self,
                conn: $crate::bindings::ConnectionId,
                topic: String,
                info: String,
            ) -> Result<bool, $crate::bindings::Error> {
                $crate::world::presence::join(self, conn, &topic, &info).await
            }

            async fn members(
                &mut self,
                topic: String,
                after: Option<$crate::bindings::ConnectionId>,
                limit: u32,
            ) -> Vec<$crate::bindings::wshost::websocket::presence::Member> {
                $crate::world::presence::members(self, &topic, after, limit).await
            }

            async fn count(&mut self, topic: String) -> u32 {
                $crate::world::presence::count(self, &topic).await
            }

            async fn notices(
                &mut self,
                topic: String,
                on: bool,
            ) -> Result<(), $crate::bindings::Error> {
                $crate::world::presence::notices(self, &topic, on)
            }
        }
    };
}
pub(crate) use imports_for;

/// `presence.join`. With `--cluster`, written to Redis before it returns
/// and before the notice goes (a failure there is logged: the member is
/// written again at the next beat).
pub async fn join(
    state: &mut impl Subscribing,
    conn: ConnectionId,
    topic: &str,
    info: &str,
) -> Result<bool, Error> {
    // Subscribed first as any subscribe is (a kept topic's, with
    // `--cluster`, from the store's position), within the bounds.
    state.with_subscriptions(conn, |subscriptions| subscriptions.may_join(topic, info))??;
    crate::world::recover::subscribe(state, conn, topic).await?;
    let joined =
        state.with_subscriptions(conn, |subscriptions| subscriptions.join(topic, info))??;
    if let Some(relay) = state.topics().relay()
        && let Err(why) = relay.join(topic, conn, info).await
    {
        tracing::warn!("presence: {topic:?}: a join not written to Redis yet ({why})");
    }
    if joined {
        // After the write: who hears of it finds it in the list. (The
        // connection may have ended meanwhile: then no one is told.)
        let _ = state.with_subscriptions(conn, |subscriptions| subscriptions.announce(topic, info));
    }
    Ok(joined)
}

/// `presence.members`: the cluster's with `--cluster` (this process's when
/// Redis cannot be reached, logged).
pub async fn members(
    state: &mut impl Subscribing,
    topic: &str,
    after: Option<ConnectionId>,
    limit: u32,
) -> Vec<wit::Member> {
    // No member has joined a topic of no valid name: nothing to ask Redis.
    if crate::pubsub::topics::check_name(topic).is_err() {
        return Vec::new();
    }
    let local = |state: &mut _| -> Vec<(ConnectionId, String)> {
        let list = Subscribing::topics(state)
            .presence()
            .list(topic, after, limit);
        list.into_iter()
            .map(|(id, info)| (id, info.to_string()))
            .collect()
    };
    let list = match state.topics().relay() {
        None => local(state),
        Some(relay) => match relay.members(topic, after, limit).await {
            Ok(list) => list,
            Err(why) => {
                tracing::warn!("presence: {topic:?}: listed from this process only ({why})");
                local(state)
            }
        },
    };
    list.into_iter()
        .map(|(conn, info)| wit::Member { conn, info })
        .collect()
}

/// `presence.count`: the cluster's with `--cluster`, as `members`.
pub async fn count(state: &mut impl Subscribing, topic: &str) -> u32 {
    if crate::pubsub::topics::check_name(topic).is_err() {
        return 0;
    }
    let Some(relay) = state.topics().relay() else {
        return state.topics().presence().count(topic);
    };
    match relay.count(topic).await {
        Ok(count) => count,
        Err(why) => {
            tracing::warn!("presence: {topic:?}: counted on this process only ({why})");
            state.topics().presence().count(topic)
        }
    }
}

/// `presence.notices`.
pub fn notices(state: &impl Subscribing, topic: &str, on: bool) -> Result<(), Error> {
    crate::pubsub::topics::check_name(topic)?;
    let set = state.topics().presence().set_notices(topic, on);
    Ok(set.map_err(crate::pubsub::topics::TopicError::from)?)
}
