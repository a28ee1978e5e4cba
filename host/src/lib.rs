//! wshost: a WebSocket server whose handlers are WebAssembly components.
//!
//! Each request is routed by path to a component of one of two worlds
//! (`wit/`): `handler`, where a fresh instance handles the request with
//! straight-line blocking calls (`upgrade`, `recv`, `push`, ...) that the host
//! runs on wasmtime's async support, so one connection's wait never blocks
//! another; or `events`, where one instance per route serves every socket of
//! the route, called once per event (`on-open`, `on-message`, `on-close`).

pub mod admin;
pub mod bindings;
pub mod budget;
pub mod cluster;
pub mod component;
pub mod config;
pub mod conn;
pub mod coro_route;
pub mod coro_state;
pub mod demo;
pub mod event_route;
pub mod event_socket;
pub mod event_state;
pub mod frame;
pub mod guest_log;
pub mod http;
pub mod hub;
pub mod inbox;
pub mod meters;
pub mod outbox;
pub mod proxy_protocol;
pub mod pump;
pub mod reader;
pub mod reload;
pub mod sandbox;
pub mod scaffold;
pub mod self_wake;
pub mod server;
pub mod socket;
pub mod state;
pub mod tls;
pub mod topics;
pub mod transport;
pub mod trim;
pub mod websocket;

pub use server::Server;
