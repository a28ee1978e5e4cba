//! What the host makes of its settings (`wshost-config` defines and checks
//! them): a guest's sandbox limiter and a connection's outbox.

use crate::ws::outbox::Outbox;
use wshost_config::Limits;

/// The host's reading of [`Limits`].
pub trait LimitsExt {
    /// The memory, table and CPU caps of one guest instance.
    fn limiter(&self) -> crate::wasm::sandbox::GuestLimiter;
    /// The outbox of a new connection `id`.
    fn outbox(&self, id: crate::bindings::ConnectionId) -> Outbox;
}

impl LimitsExt for Limits {
    fn limiter(&self) -> crate::wasm::sandbox::GuestLimiter {
        crate::wasm::sandbox::GuestLimiter::new(
            self.guest_memory,
            self.guest_table_elements,
            self.guest_cpu_timeout,
        )
    }

    fn outbox(&self, id: crate::bindings::ConnectionId) -> Outbox {
        Outbox::new(id, self.hub_queue, self.backpressure_limit).with_byte_cap(self.hub_queue_bytes)
    }
}
