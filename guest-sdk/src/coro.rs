//! Coroutines: the seed's straight-line handlers as `async fn`s, many of
//! them tasks of one instance. Each waiting call (`recv`, `push`, ...)
//! suspends only its own connection's task; the instance serves the other
//! connections meanwhile, so an idle connection costs a task, not an
//! instance.
//!
//! ```no_run
//! use wshost_guest::coro::Connection;
//! use wshost_guest::{Error, Request};
//!
//! async fn echo(req: Request, ws: Connection) -> Result<(), Error> {
//!     ws.upgrade().await?;
//!     drop(req); // what a waiting task holds stays allocated
//!     while let Some(frame) = ws.recv(None).await? {
//!         if frame.is_close() {
//!             break;
//!         }
//!         ws.push_text(&format!("Hello, {}!", frame.text_lossy())).await?;
//!     }
//!     ws.close().await;
//!     Ok(())
//! }
//!
//! wshost_guest::export_coro!(echo);
//! ```
//!
//! A task waiting in `recv` keeps everything it holds, its `Request` too
//! (a parameter lives until the function returns): drop what you no
//! longer need before the loop. A browser's request is 0.5-2 KiB of
//! headers, more than the rest of an idle task.
//!
//! One instance is shared: a `static` is shared by all its connections, and
//! a trap (a panic) ends every connection of the instance (the host closes
//! them with 1011). Hub and topic calls are the handler world's
//! ([`crate::hub`], [`crate::topics`]).

use crate::{ConnectionId, Frame, Opcode, Response, Result};

/// Generated from `wit/` for the `coro` world; the interfaces it shares
/// with the handler world come from [`crate::bindings`]. Prefer the wrappers.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "coro",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_coro_world",
        default_bindings_module: "wshost_guest::coro::bindings",
        with: {
            "wshost:websocket/types@0.1.0": crate::bindings::wshost::websocket::types,
            "wshost:websocket/event-types@0.1.0": crate::bindings::wshost::websocket::event_types,
            "wshost:websocket/topics@0.1.0": crate::bindings::wshost::websocket::topics,
            "wshost:websocket/hub@0.1.0": crate::bindings::wshost::websocket::hub,
            "wshost:websocket/history@0.1.0": crate::bindings::wshost::websocket::history,
            "wshost:websocket/presence@0.1.0": crate::bindings::wshost::websocket::presence,
        },
    });
}

use bindings::wshost::websocket::coro_connection as host;

/// The connection of the request this task was called for: the handler
/// world's [`crate::Connection`], every waiting call `async`.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    id: ConnectionId,
}

impl Connection {
    #[doc(hidden)]
    pub fn __new(id: ConnectionId) -> Self {
        Connection { id }
    }

    /// This connection's id, as other handlers see it in [`crate::hub::connections`].
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Send `101 Switching Protocols`.
    pub async fn upgrade(&self) -> Result<()> {
        host::upgrade(self.id, None, Vec::new()).await
    }

    /// Send `101 Switching Protocols` with subprotocol `protocol` (from the
    /// client's offer) and extra `headers`.
    pub async fn upgrade_with(
        &self,
        protocol: Option<&str>,
        headers: &[(String, String)],
    ) -> Result<()> {
        host::upgrade(self.id, protocol.map(str::to_string), headers.to_vec()).await
    }

    /// Wait for the next message, at most `timeout` (`None`: forever):
    /// `Ok(Some(frame))` a message or the peer's Close frame, `Ok(None)`
    /// once the connection is closed.
    pub async fn recv(&self, timeout: Option<std::time::Duration>) -> Result<Option<Frame>> {
        let ms = timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        host::recv(self.id, ms).await
    }

    /// Send a frame; `fin = false` starts or continues a fragmented message.
    pub async fn push(&self, data: &[u8], opcode: Opcode, fin: bool) -> Result<()> {
        host::push(self.id, data.to_vec(), opcode, fin).await
    }

    /// Send a whole text message.
    pub async fn push_text(&self, text: &str) -> Result<()> {
        self.push(text.as_bytes(), Opcode::Text, true).await
    }

    /// Send a whole binary message.
    pub async fn push_binary(&self, data: &[u8]) -> Result<()> {
        self.push(data, Opcode::Binary, true).await
    }

    /// Send a Close frame: the polite way to end, before [`Connection::close`].
    pub async fn push_close(&self, code: u16, reason: &str) -> Result<()> {
        host::push_close(self.id, code, reason.to_string()).await
    }

    /// Drop the TCP connection without a Close frame.
    pub async fn close(&self) {
        host::close(self.id).await
    }

    /// Subscribe this connection to `topic` (once upgraded).
    pub fn subscribe(&self, topic: &str) -> Result<bool> {
        crate::topics::subscribe(self.id, topic)
    }

    /// Subscribe this connection (once upgraded) to `topic`, which keeps
    /// history, from `since`: what it missed first, then the live messages
    /// (see [`crate::history`]).
    pub fn subscribe_from(
        &self,
        topic: &str,
        since: Option<&crate::history::Position>,
    ) -> Result<crate::history::Recovery> {
        crate::history::subscribe_from(self.id, topic, since)
    }

    /// Join `topic` (subscribing to it) as a member with `info`, listed
    /// until it leaves (see [`crate::presence`]); true if not a member yet.
    pub fn join(&self, topic: &str, info: &str) -> Result<bool> {
        crate::presence::join(self.id, topic, info)
    }

    /// Unsubscribe this connection from `topic`.
    pub fn unsubscribe(&self, topic: &str) -> Result<bool> {
        crate::topics::unsubscribe(self.id, topic)
    }

    /// Answer with a plain HTTP response instead of upgrading.
    pub async fn respond(&self, response: Response) -> Result<()> {
        host::respond(self.id, response.status, response.headers, response.body).await
    }
}

/// Export `async fn(Request, Connection) -> Result<(), E>` (any
/// `E: Display`) as this component's coroutine handler (the `coro` world's
/// `serve`). Use it once per component.
#[macro_export]
macro_rules! export_coro {
    ($handler:path) => {
        const _: () = {
            struct Coro;
            impl $crate::coro::bindings::Guest for Coro {
                async fn serve(
                    conn: $crate::ConnectionId,
                    req: $crate::Request,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $handler(req, $crate::coro::Connection::__new(conn))
                        .await
                        .map_err(|e| e.to_string())
                }
            }
    $crate::coro::bindings::__export_coro_world!(Coro with_types_in $crate::coro::bindings);
        };
    };
}
