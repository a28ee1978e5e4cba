//! What every world's guests run under: the sandbox (memory, tables, CPU
//! budget, WASI grants: [`sandbox`]), their stdout and stderr as log lines
//! ([`guest_log`]), and the waker that lets an instance's own task take its
//! wakes in place ([`self_wake`]).
//!
//! Invariant: a guest reaches nothing the route did not grant, and runs no
//! longer than its CPU budget without really waiting.

pub mod guest_log;
pub mod sandbox;
pub mod self_wake;
