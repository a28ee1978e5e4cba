//! Host-side bindings of the worlds of `wit/`: `handler` (one instance per
//! request), `events` (one instance per route) and `coro` (many requests as
//! tasks of one instance). The interfaces both
//! worlds import (`types`, `event-types`, `topics`, `history`, `presence`) are generated
//! once, with the handler world, and shared.

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    with: {
        "wshost:websocket/messages.message": HeldMessage,
    },
});

pub use self::wshost::websocket::event_types::{Decision, Message, SendStatus, UpgradeOptions};

/// What a `messages.message` handle stands for: a received message's
/// payload, held by the host for its guest (`crate::world::held`).
pub struct HeldMessage {
    pub(crate) data: bytes::Bytes,
    /// Text (checked UTF-8 when it arrived), else binary.
    pub(crate) text: bool,
}
pub use self::wshost::websocket::types::{CloseInfo, ConnectionId, Error, Frame, Opcode};

/// The `events` world.
pub mod events {
    wasmtime::component::bindgen!({
        world: "events",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wshost:websocket/types": crate::bindings::wshost::websocket::types,
            "wshost:websocket/event-types": crate::bindings::wshost::websocket::event_types,
            "wshost:websocket/topics": crate::bindings::wshost::websocket::topics,
            "wshost:websocket/history": crate::bindings::wshost::websocket::history,
            "wshost:websocket/presence": crate::bindings::wshost::websocket::presence,
        },
    });

    pub use self::wshost::websocket::sockets;
}

/// The `coro` world.
pub mod coro {
    wasmtime::component::bindgen!({
        world: "coro",
        path: "../wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "wshost:websocket/types": crate::bindings::wshost::websocket::types,
            "wshost:websocket/event-types": crate::bindings::wshost::websocket::event_types,
            "wshost:websocket/topics": crate::bindings::wshost::websocket::topics,
            "wshost:websocket/hub": crate::bindings::wshost::websocket::hub,
            "wshost:websocket/history": crate::bindings::wshost::websocket::history,
            "wshost:websocket/presence": crate::bindings::wshost::websocket::presence,
        },
    });

    pub use self::wshost::websocket::coro_connection;
}
