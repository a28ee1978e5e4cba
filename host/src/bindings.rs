//! Host-side bindings of the `wshost:websocket/handler` world (`wit/`).

wasmtime::component::bindgen!({
    world: "handler",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
});

pub use self::wshost::websocket::types::{CloseInfo, ConnectionId, Error, Frame, Opcode};
