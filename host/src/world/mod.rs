//! The three worlds a route's component may implement (`wit/`):
//!
//! - [`handler`]: an instance per connection, straight-line `upgrade`,
//!   `recv`, `push` (the seed's model);
//! - [`events`]: one instance for a route's sockets, called per event
//!   (Bun's shape);
//! - [`coro`]: straight-line handlers as component-model async tasks, many
//!   to an instance.
//!
//! What the handler and coro worlds share is here, not in either: the
//! connection a guest calls ([`conn`]) and the upgraded socket under it
//! ([`upgraded`]); and what the worlds make of the limits ([`limits`]).
//! A handler-world connection's socket pump runs in the guest's task, beside
//! the guest's call ([`beside`]); the messages its guest leaves with the
//! host are in [`held`]. Topic history's imports and presence's, the same
//! in all three worlds, are in [`recover`] and [`presence`].
//!
//! Invariant: whatever a guest does, its connection ends by one path that
//! gives back its slot, budget, inbox, outbox and subscriptions.

pub mod beside;
pub mod conn;
pub mod coro;
pub mod events;
pub mod handler;
pub mod held;
pub mod limits;
pub mod presence;
pub mod recover;
pub mod upgraded;

use crate::meters::RouteMeters;
use crate::pubsub::{hub::Hub, topics::Topics};
use std::sync::Arc;
use wshost_config::Limits;

/// What the connections of one handler or coro route share, each
/// [`conn::Conn`] a copy: the route's limits, the hub its connections are
/// reached through, the server's topics, and the route's meters.
#[derive(Clone)]
pub struct RouteContext {
    pub limits: Arc<Limits>,
    pub hub: Arc<Hub>,
    pub topics: Arc<Topics>,
    pub meters: RouteMeters,
}
