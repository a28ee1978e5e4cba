use crate::bindings::wshost::websocket::connection as host;
use crate::{ConnectionId, Frame, Opcode, Response, Result};

/// The connection of the request this handler was called for: upgrade it to a
/// WebSocket, or answer it with a plain HTTP [`Response`].
///
/// Every method blocks this handler until the host has done the work; other
/// connections run on meanwhile.
#[derive(Debug)]
pub struct Connection {
    _private: (),
}

impl Connection {
    pub(crate) fn current() -> Self {
        Connection { _private: () }
    }

    /// This connection's id, as other handlers see it in [`crate::hub::connections`].
    pub fn id(&self) -> ConnectionId {
        host::id()
    }

    /// Send `101 Switching Protocols`. Fails with [`crate::Error::Protocol`] when
    /// the request is no WebSocket handshake; the host has then answered it.
    pub fn upgrade(&self) -> Result<()> {
        host::upgrade()
    }

    /// Send `101 Switching Protocols` with the subprotocol `protocol` picked
    /// from the client's offer ([`crate::Request::protocols`]) and extra
    /// response `headers` (e.g. `set-cookie`). A pick the client did not
    /// offer, or a header the host sets itself, fails with
    /// [`crate::Error::Protocol`] and leaves the request unanswered.
    pub fn upgrade_with(&self, protocol: Option<&str>, headers: &[(String, String)]) -> Result<()> {
        crate::bindings::wshost::websocket::handshake::upgrade_with(protocol, headers)
    }

    /// Wait for the next message, at most `timeout` (`None`: forever).
    ///
    /// `Ok(Some(frame))` is a message or the peer's Close frame
    /// ([`Frame::is_close`]); `Ok(None)` means the connection is closed.
    pub fn recv(&self, timeout: Option<std::time::Duration>) -> Result<Option<Frame>> {
        let ms = timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        host::recv(ms)
    }

    /// Wait for the next message, as [`Connection::recv`], and leave it with
    /// the host: read it in slices or hand it back ([`Connection::push_message`],
    /// [`crate::messages::Message::publish`], ...) without copying it into
    /// this instance's memory. `Ok(None)` means the connection is closed.
    pub fn recv_message(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> Result<Option<crate::messages::Incoming>> {
        let ms = timeout.map(|t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX));
        crate::messages::recv(ms)
    }

    /// Send a message received with [`Connection::recv_message`], whole and
    /// with its opcode, without a copy.
    pub fn push_message(&self, msg: &crate::messages::Message) -> Result<()> {
        crate::messages::push(msg)
    }

    /// Send a frame; `fin = false` starts or continues a fragmented message
    /// (continue with [`Opcode::Continuation`]).
    pub fn push(&self, data: &[u8], opcode: Opcode, fin: bool) -> Result<()> {
        host::push(data, opcode, fin)
    }

    /// Send a whole text message.
    pub fn push_text(&self, text: &str) -> Result<()> {
        host::push(text.as_bytes(), Opcode::Text, true)
    }

    /// Send a whole binary message.
    pub fn push_binary(&self, data: &[u8]) -> Result<()> {
        host::push(data, Opcode::Binary, true)
    }

    /// Send a Close frame: the polite way to end, before [`Connection::close`].
    pub fn push_close(&self, code: u16, reason: &str) -> Result<()> {
        host::push_close(code, reason)
    }

    /// Drop the TCP connection without a Close frame.
    pub fn close(&self) {
        host::close()
    }

    /// Subscribe this connection to `topic` (once upgraded): what is
    /// published there is written between this handler's own frames.
    pub fn subscribe(&self, topic: &str) -> Result<bool> {
        crate::topics::subscribe(host::id(), topic)
    }

    /// Subscribe this connection (once upgraded) to `topic`, which keeps
    /// history, from `since`: what it missed first, then the live messages
    /// (see [`crate::history`]).
    pub fn subscribe_from(
        &self,
        topic: &str,
        since: Option<&crate::history::Position>,
    ) -> Result<crate::history::Recovery> {
        crate::history::subscribe_from(host::id(), topic, since)
    }

    /// Join `topic` (subscribing to it) as a member with `info`, listed
    /// until it leaves (see [`crate::presence`]); true if not a member yet.
    pub fn join(&self, topic: &str, info: &str) -> Result<bool> {
        crate::presence::join(host::id(), topic, info)
    }

    /// Unsubscribe this connection from `topic`.
    pub fn unsubscribe(&self, topic: &str) -> Result<bool> {
        crate::topics::unsubscribe(host::id(), topic)
    }

    /// Answer with a plain HTTP response instead of upgrading.
    pub fn respond(&self, response: Response) -> Result<()> {
        host::respond(response.status, &response.headers, &response.body)
    }
}
