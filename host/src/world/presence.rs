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
                $crate::world::presence::join(self, conn, &topic, &info)
            }

            async fn members(
                &mut self,
                topic: String,
                after: Option<$crate::bindings::ConnectionId>,
                limit: u32,
            ) -> Vec<$crate::bindings::wshost::websocket::presence::Member> {
                $crate::world::presence::members(self, &topic, after, limit)
            }

            async fn count(&mut self, topic: String) -> u32 {
                $crate::world::recover::Subscribing::topics(self)
                    .presence()
                    .count(&topic)
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

/// `presence.join`.
pub fn join(
    state: &mut impl Subscribing,
    conn: ConnectionId,
    topic: &str,
    info: &str,
) -> Result<bool, Error> {
    Ok(state.with_subscriptions(conn, |subscriptions| subscriptions.join(topic, info))??)
}

/// `presence.members`.
pub fn members(
    state: &impl Subscribing,
    topic: &str,
    after: Option<ConnectionId>,
    limit: u32,
) -> Vec<wit::Member> {
    let list = state.topics().presence().list(topic, after, limit);
    list.into_iter()
        .map(|(conn, info)| wit::Member {
            conn,
            info: info.to_string(),
        })
        .collect()
}

/// `presence.notices`.
pub fn notices(state: &impl Subscribing, topic: &str, on: bool) -> Result<(), Error> {
    crate::pubsub::topics::check_name(topic)?;
    let set = state.topics().presence().set_notices(topic, on);
    Ok(set.map_err(crate::pubsub::topics::TopicError::from)?)
}
