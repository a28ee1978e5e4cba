//! wshost: a WebSocket server whose handlers are WebAssembly components.
//!
//! Each request is routed by path to a component of the `wshost:websocket/handler`
//! world (`wit/`); a fresh instance handles it with straight-line blocking calls
//! (`upgrade`, `recv`, `push`, `close`, ...) that the host runs on wasmtime's async
//! support, so one connection's wait never blocks another.

pub mod bindings;
pub mod component;
pub mod config;
pub mod conn;
pub mod demo;
pub mod guest_log;
pub mod http;
pub mod hub;
pub mod read_ahead;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod websocket;

pub use config::{ComponentSource, Limits, RouteSpec};
pub use server::Server;
