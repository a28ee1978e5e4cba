//! Write wshost WebSocket handlers in Rust.
//!
//! A handler is a plain function of the request and its [`Connection`], written
//! as straight-line code: upgrade, then a loop of [`Connection::recv`] and
//! [`Connection::push_text`]. Each call blocks only this handler; the host runs
//! every connection in its own instance. [`export_handler!`] exports the function
//! as the component's `handle` export.
//!
//! ```no_run
//! use wshost_guest::{Connection, Error, Request};
//!
//! fn echo(_req: Request, ws: Connection) -> Result<(), Error> {
//!     ws.upgrade()?;
//!     loop {
//!         match ws.recv(None) {
//!             Ok(Some(frame)) if frame.is_close() => break,
//!             Ok(Some(frame)) => ws.push_text(&format!("Hello, {}!", frame.text_lossy()))?,
//!             Ok(None) => break,                       // the peer has gone
//!             Err(e) => { eprintln!("recv: {e}"); break }
//!         }
//!     }
//!     ws.close();
//!     Ok(())
//! }
//!
//! wshost_guest::export_handler!(echo);
//! ```
//!
//! A handler that forwards or publishes what it receives should take it
//! with [`Connection::recv_message`]: the message stays in the host and
//! goes back out without a copy (see [`messages`]).
//!
//! For routes with many mostly idle sockets, the event style serves them all
//! from one instance: see [`events`].
//!
//! Build with `cargo build --target wasm32-wasip2 --release`: the `.wasm` in
//! `target/wasm32-wasip2/release/` is a component `wshost serve` can load.

mod connection;
pub mod coro;
pub mod events;
mod frame;
pub mod history;
pub mod hub;
pub mod messages;
pub mod presence;
mod request;
mod response;
pub mod topics;

pub use connection::Connection;
pub use response::Response;

/// Generated from `wit/`: the raw imports and exports. Prefer the wrappers.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_handler_world",
        default_bindings_module: "wshost_guest::bindings",
    });
}

pub use bindings::wshost::websocket::types::{
    CloseInfo, ConnectionId, Error, Frame, Opcode, Request,
};

/// `Result` with the host's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Export `fn(Request, Connection) -> Result<(), E>` (any `E: Display`) as this
/// component's handler. Use it once per component.
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        const _: () = {
            struct Handler;
            impl $crate::bindings::Guest for Handler {
                fn handle(
                    req: $crate::Request,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__run(req, $handler)
                }
            }
    $crate::bindings::__export_handler_world!(Handler with_types_in $crate::bindings);
        };
    };
}

#[doc(hidden)]
pub fn __run<E: std::fmt::Display>(
    req: Request,
    handler: impl FnOnce(Request, Connection) -> Result<(), E>,
) -> Result<(), String> {
    handler(req, Connection::current()).map_err(|e| e.to_string())
}
