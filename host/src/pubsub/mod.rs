//! Messages between connections: the hub (send to a connection by id,
//! broadcast: [`hub`]), topics with their subscribers ([`topics`]), the
//! last messages of topics that keep them, with positions to recover from
//! ([`history`]), who is in a topic ([`presence`]), and the same across
//! processes through Redis ([`cluster`]).
//!
//! Invariant: a message is framed once for all its receivers, and a
//! receiver that does not keep up is evicted (its outbox's bound), never
//! waited for.

pub mod cluster;
pub mod history;
pub mod hub;
pub mod presence;
pub mod topics;
