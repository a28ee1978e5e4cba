//! The event world: one instance serves every socket of its route, called
//! once per event (`on-open`, `on-message`, `on-close`, `on-drain`). The
//! route's instance and its queue of events ([`route`]), each socket's
//! task ([`socket`]), and the instance's store and imports ([`state`]).
//!
//! Invariant: a socket's task never waits for the route's instance inside
//! a read; it still writes, pings and closes while the guest is busy.

pub mod route;
pub mod socket;
pub mod state;
