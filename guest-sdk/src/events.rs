//! The event style: one instance serves every socket of its route, called
//! once per event, as Bun's `websocket: { open, message, close }`.
//!
//! ```no_run
//! use wshost_guest::events::{Handler, Message, Socket};
//! use wshost_guest::topics;
//!
//! struct Chat;
//!
//! impl Handler for Chat {
//!     fn open(ws: Socket) {
//!         ws.subscribe("chat").expect("a valid topic");
//!     }
//!     fn message(_ws: Socket, msg: Message) {
//!         let _ = topics::publish("chat", format!("Сервер：{}", msg.text_lossy()));
//!     }
//! }
//!
//! wshost_guest::export_events!(Chat);
//! ```
//!
//! Every call is non-blocking. Keep what must outlive the instance (a
//! user name, a room) in the socket's [`Socket::set_attachment`]: after a
//! trap the host makes a fresh instance that serves the same sockets.

use crate::{ConnectionId, Request, Response, Result};

/// Generated from `wit/` for the `events` world; the interfaces it shares
/// with the handler world come from [`crate::bindings`]. Prefer the wrappers.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "events",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_events_world",
        default_bindings_module: "wshost_guest::events::bindings",
        with: {
            "wshost:websocket/types@0.1.0": crate::bindings::wshost::websocket::types,
            "wshost:websocket/event-types@0.1.0": crate::bindings::wshost::websocket::event_types,
            "wshost:websocket/topics@0.1.0": crate::bindings::wshost::websocket::topics,
            "wshost:websocket/history@0.1.0": crate::bindings::wshost::websocket::history,
            "wshost:websocket/presence@0.1.0": crate::bindings::wshost::websocket::presence,
        },
    });
}

use bindings::wshost::websocket::sockets as host;

pub use crate::bindings::wshost::websocket::event_types::{
    Decision, Message, SendStatus, UpgradeOptions,
};

/// An event route's component: implement the events it cares about, export
/// it with [`crate::export_events!`].
pub trait Handler {
    /// Every request to the route: upgrade it (the default) or answer it.
    fn request(req: Request) -> Decision {
        let _ = req;
        Decision::upgrade()
    }

    /// The socket is open (the 101 is sent).
    fn open(ws: Socket) {
        let _ = ws;
    }

    /// A whole message from the peer.
    fn message(ws: Socket, msg: Message);

    /// The socket has closed: `code` 1006 when no Close frame was exchanged.
    /// Its subscriptions have ended; its attachment is still readable.
    fn close(ws: Socket, code: u16, reason: String) {
        let _ = (ws, code, reason);
    }

    /// A socket whose send reported [`SendStatus::BackedUp`] has written
    /// everything out.
    fn drain(ws: Socket) {
        let _ = ws;
    }
}

/// One open socket of this route, by id: copy it freely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Socket(ConnectionId);

impl Socket {
    #[doc(hidden)]
    pub fn from_id(id: ConnectionId) -> Self {
        Socket(id)
    }

    pub fn id(self) -> ConnectionId {
        self.0
    }

    /// Queue a message; [`SendStatus::BackedUp`] asks to wait for `drain`.
    pub fn send(self, msg: impl Into<Message>) -> Result<SendStatus> {
        host::send(self.0, &msg.into())
    }

    /// Close politely with `code` and `reason` after what is queued.
    pub fn close(self, code: u16, reason: &str) -> Result<()> {
        host::close(self.0, code, reason)
    }

    /// Drop TCP at once, no Close frame (the seed's `close()`).
    pub fn terminate(self) {
        host::terminate(self.0)
    }

    /// Bytes queued to the socket and not yet written.
    pub fn buffered_amount(self) -> u64 {
        host::buffered_amount(self.0)
    }

    /// Subscribe to `topic`; true if not subscribed yet.
    pub fn subscribe(self, topic: &str) -> Result<bool> {
        crate::topics::subscribe(self.0, topic)
    }

    /// Subscribe to `topic`, which keeps history, from `since`: what came
    /// after it is queued first, then the live messages (see
    /// [`crate::history`]). [`crate::history::Recovery::Reset`] when that
    /// cannot be done (another epoch, no longer kept): the client must
    /// reload.
    pub fn subscribe_from(
        self,
        topic: &str,
        since: Option<&crate::history::Position>,
    ) -> Result<crate::history::Recovery> {
        crate::history::subscribe_from(self.0, topic, since)
    }

    /// Join `topic` (subscribing to it) as a member with `info`, listed
    /// until it leaves (see [`crate::presence`]); true if not a member yet.
    pub fn join(self, topic: &str, info: &str) -> Result<bool> {
        crate::presence::join(self.0, topic, info)
    }

    /// Unsubscribe from `topic`; true if subscribed.
    pub fn unsubscribe(self, topic: &str) -> Result<bool> {
        crate::topics::unsubscribe(self.0, topic)
    }

    /// Publish to `topic`'s subscribers but this socket (Bun's `ws.publish`);
    /// returns how many took it.
    pub fn publish(self, topic: &str, msg: impl Into<Message>) -> Result<u32> {
        crate::topics::publish_except(topic, msg, self.0)
    }

    /// Keep `data` (at most 16 KiB) with the socket, in the host.
    pub fn set_attachment(self, data: &[u8]) -> Result<()> {
        host::set_attachment(self.0, data)
    }

    /// What [`Socket::set_attachment`] (or the upgrade) kept, if anything.
    pub fn attachment(self) -> Option<Vec<u8>> {
        host::attachment(self.0)
    }
}

/// This route's open sockets.
pub fn open_sockets() -> Vec<Socket> {
    host::open_sockets().into_iter().map(Socket).collect()
}

impl Decision {
    /// Accept the handshake, no subprotocol, no extra headers.
    pub fn upgrade() -> Self {
        Decision::Upgrade(UpgradeOptions::default())
    }

    /// Answer over HTTP instead.
    pub fn respond(response: Response) -> Self {
        Decision::Respond(crate::bindings::wshost::websocket::event_types::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

// The type is generated (in `crate::bindings`): it cannot be derived there.
#[allow(clippy::derivable_impls)]
impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            protocol: None,
            headers: Vec::new(),
            attachment: None,
        }
    }
}

impl UpgradeOptions {
    /// Pick the subprotocol `protocol` (one the client offered).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Add a header to the 101 response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The socket's first attachment.
    pub fn attachment(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.attachment = Some(data.into());
        self
    }
}

impl From<UpgradeOptions> for Decision {
    fn from(options: UpgradeOptions) -> Self {
        Decision::Upgrade(options)
    }
}

impl From<Response> for Decision {
    fn from(response: Response) -> Self {
        Decision::respond(response)
    }
}

impl Message {
    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }

    /// The payload, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(data) => data,
        }
    }

    /// The payload as text, invalid UTF-8 replaced.
    pub fn text_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(text.to_string())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::Binary(data)
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Message::Binary(data.to_vec())
    }
}

/// Export a [`Handler`] type as this component's event handlers (world
/// `wshost:websocket/events`). Use it once per component.
#[macro_export]
macro_rules! export_events {
    ($handler:ty) => {
        const _: () = {
            use $crate::events::Handler as _;
            struct Events;
            impl $crate::events::bindings::Guest for Events {
                fn on_request(_conn: $crate::ConnectionId, req: $crate::Request) -> $crate::events::Decision {
                    <$handler>::request(req)
                }
                fn on_open(conn: $crate::ConnectionId) {
                    <$handler>::open($crate::events::Socket::from_id(conn))
                }
                fn on_message(conn: $crate::ConnectionId, msg: $crate::events::Message) {
                    <$handler>::message($crate::events::Socket::from_id(conn), msg)
                }
                fn on_close(conn: $crate::ConnectionId, code: u16, reason: ::std::string::String) {
                    <$handler>::close($crate::events::Socket::from_id(conn), code, reason)
                }
                fn on_drain(conn: $crate::ConnectionId) {
                    <$handler>::drain($crate::events::Socket::from_id(conn))
                }
            }
            $crate::events::bindings::__export_events_world!(Events with_types_in $crate::events::bindings);
        };
    };
}
