//! An upgraded WebSocket, as the host runs it: the socket's bytes read into
//! frames and messages ([`reader`], over `wshost_proto::decode`), what
//! waits to be written ([`outbox`]) and to be taken by the guest
//! ([`inbox`]), the socket's own task ([`pump`]) and its writes
//! ([`socket`], [`frame`]), the process-wide budget of bytes under way
//! ([`budget`]), and the sweep that rings every socket's keepalive alarm
//! and tells it of the shutdown ([`alarms`]).
//!
//! Invariant: every byte held for a connection is bounded (inbox, outbox,
//! budget), and a socket's task ends by one path that gives back what the
//! connection held, whatever its world.

pub mod alarms;
pub mod budget;
pub mod frame;
pub mod inbox;
pub mod outbox;
pub mod pump;
pub mod reader;
pub mod socket;
