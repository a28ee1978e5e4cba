//! wshost's WebSocket protocol as a library with no I/O policy: what the
//! peer's bytes mean and what the server's frames are, nothing about
//! sockets, budgets, timeouts or tasks (the host's `net` and `socket`
//! layers drive it). Every function that reads bytes from the network is
//! here, and each has a fuzz target in `fuzz/`.
//!
//! - [`decode`]: client frames checked and unmasked, fragments joined,
//!   compressed messages inflated, control frames handed up (RFC 6455 §5).
//! - [`utf8`]: UTF-8 checked across fragments.
//! - [`deflate`]: permessage-deflate (RFC 7692) negotiated, inflated with a
//!   bound, compressed.
//! - [`frame`]: server frames, encoded once.
//! - [`http`]: the request head, the handshake's checks, plain responses.
//! - [`proxy`]: the PROXY protocol header of a layer-4 balancer.
//! - [`forwarded`]: the client a trusted proxy names in `X-Forwarded-For`.
//!
//! Invariant: no input makes any of these panic or allocate past the
//! limits their callers give; errors are enums that say which close code or
//! status the peer gets.

pub mod decode;
pub mod deflate;
pub mod forwarded;
pub mod frame;
pub mod http;
pub mod proxy;
pub mod utf8;
