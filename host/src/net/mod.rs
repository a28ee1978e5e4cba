//! The network layer: bytes in and out of a socket, before anything is a
//! WebSocket. A connection's stream (plain TCP or TLS, [`transport`]), the
//! certificate it presents ([`tls`]), the PROXY header a balancer puts
//! first ([`proxy_protocol`]), and the HTTP request head and plain
//! responses ([`http`]; their parsing is `wshost_proto`'s).
//!
//! Invariant: nothing here knows about guests, routes or worlds; every
//! read is bounded by a size and a deadline the caller gives.

pub mod http;
pub mod proxy_protocol;
pub mod tls;
pub mod transport;
