//! The coro world: each request is a task (`serve`) of one of a few
//! instances, component-model async. The route's instances, their pool
//! share and the quarantine of crashing clients ([`route`]); an instance's
//! store and its imports over the shared [`super::conn`] ([`state`]).
//!
//! Invariant: a task that waits suspends alone; one that never waits is
//! stopped by its instance's CPU budget, and one whose calls are all done
//! at once gives the others a turn.

pub mod route;
pub mod state;
