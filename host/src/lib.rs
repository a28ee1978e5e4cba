//! wshost: a WebSocket server whose handlers are WebAssembly components.
//!
//! Each request is routed by path to a component of one of three worlds
//! (`wit/`): `handler` (a fresh instance per connection, straight-line
//! `upgrade`, `recv`, `push`), `events` (one instance per route, called per
//! event) or `coro` (straight-line handlers as async tasks, many to an
//! instance). The layers, from the wire up (ARCHITECTURE.md has the map):
//! [`net`] → [`ws`] → [`pubsub`] and [`wasm`] → [`world`] → [`server`], with
//! [`ops`] beside them and [`meters`] and [`bindings`] under all.

pub mod bindings;
pub mod meters;
pub mod net;
pub mod ops;
pub mod pubsub;
pub mod server;
pub mod wasm;
pub mod world;
pub mod ws;

pub use server::Server;
