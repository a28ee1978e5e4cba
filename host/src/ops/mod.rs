//! What operators and new users reach beside serving: the admin listener
//! (`/metrics`, `/healthz`, `/readyz`: [`admin`]) and `wshost new`
//! ([`scaffold`]).
//!
//! Invariant: nothing here is on a connection's path.

pub mod admin;
pub mod scaffold;
