//! An upgraded connection: its WebSocket stream, its hub mailbox, and the
//! Close frames the host owes the peer.
//!
//! The guest's `recv` reads the socket directly (no task or channel between
//! the guest and its own socket). Hub messages wait in the mailbox and are
//! written between the guest's own frames, by `recv` and `push`.

use crate::bindings::{CloseInfo, Error, Frame, Opcode};
use crate::hub::{Mailbox, Membership};
use crate::read_ahead::ReadAhead;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Message, Utf8Bytes};

/// The longest reason a Close frame can carry (125-byte payload less the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// The reason of the 1001 Close frame sent when the server shuts down.
const GOING_AWAY: &str = "server shutting down";

/// The reason of the 1008 Close frame sent to a connection its hub evicted.
const TOO_SLOW: &str = "too slow: hub messages were not taken";

pub struct Upgraded {
    ws: WebSocketStream<ReadAhead<TcpStream>>,
    mailbox: Mailbox,
    membership: Option<Membership>,
    close_timeout: Duration,
    /// A fragmented push is under way: nothing else may be interleaved.
    fragmenting: bool,
    /// Reads have ended: the peer closed or the socket failed.
    peer_gone: bool,
    /// The host has sent its own Close frame (1001 or 1008).
    host_closed: bool,
    /// A write was abandoned half-way: the stream can carry nothing more and
    /// the TCP connection must be dropped.
    pub broken: bool,
}

impl Upgraded {
    pub fn new(
        ws: WebSocketStream<ReadAhead<TcpStream>>,
        mailbox: Mailbox,
        membership: Membership,
        close_timeout: Duration,
    ) -> Self {
        Upgraded {
            ws,
            mailbox,
            membership: Some(membership),
            close_timeout,
            fragmenting: false,
            peer_gone: false,
            host_closed: false,
            broken: false,
        }
    }

    fn evicted(&self) -> bool {
        self.mailbox.is_evicted()
    }

    /// The next message for the guest; see `connection.recv` in the WIT.
    pub async fn recv(
        &mut self,
        deadline: Option<Instant>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Frame>, Error> {
        if self.peer_gone || self.broken {
            return Ok(None);
        }
        loop {
            if self.evicted() && !self.host_closed {
                return Ok(Some(self.host_close(CloseCode::Policy, TOO_SLOW).await));
            }
            if *shutdown.borrow() && !self.host_closed {
                return Ok(Some(self.host_close(CloseCode::Away, GOING_AWAY).await));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(Error::Timeout);
            }
            // What is queued goes out before more is read: a connection whose
            // own messages fill its mailbox (a broadcaster) slows its reading
            // down to its writing instead of overflowing.
            self.drain_mailbox(true).await?;
            // Biased: when a message is already there, the other branches'
            // futures are never polled, so the hot path registers no wakers.
            // The flags they watch are also checked above, so none starves.
            tokio::select! {
                biased;
                incoming = self.ws.next() => match incoming {
                    Some(Ok(msg)) => {
                        if let Some(frame) = self.deliver(msg).await {
                            return Ok(Some(frame));
                        }
                    }
                    Some(Err(e)) => return self.read_failed(e).await,
                    None => {
                        self.peer_gone = true;
                        return Ok(None);
                    }
                },
                queued = self.mailbox.take(), if !self.fragmenting => {
                    self.write(Some(queued), true).await?;
                }
                // Either flag turning true is acted on at the top of the loop.
                _ = self.mailbox.evicted(), if !self.host_closed => {}
                _ = turned_true(shutdown), if !self.host_closed => {}
                _ = sleep_until(deadline) => return Err(Error::Timeout),
            }
        }
    }

    /// Send the guest's frame, after the hub messages waiting for this
    /// connection (unless a fragmented message is under way).
    pub async fn push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        if self.peer_gone || self.broken {
            return Err(Error::PeerClosed);
        }
        if self.evicted() && !self.host_closed {
            self.host_close(CloseCode::Policy, TOO_SLOW).await;
            return Err(Error::PeerClosed);
        }
        let msg = self.outgoing(data, op, fin)?;
        self.drain_mailbox(false).await?;
        self.write(Some(msg), true).await
    }

    /// Write the hub messages queued so far, unless a fragmented message is
    /// under way; flush them if asked (else the next write does).
    async fn drain_mailbox(&mut self, flush: bool) -> Result<(), Error> {
        if self.fragmenting {
            return Ok(());
        }
        let mut wrote = false;
        while let Some(queued) = self.mailbox.try_take() {
            self.write(Some(queued), false).await?;
            wrote = true;
        }
        if wrote && flush {
            self.write(None, true).await?;
        }
        Ok(())
    }

    /// Send the guest's Close frame.
    pub async fn push_close(&mut self, frame: CloseFrame) -> Result<(), Error> {
        if self.broken {
            return Err(Error::PeerClosed);
        }
        self.ws
            .close(Some(frame))
            .await
            .map_err(|e| self.write_failed(e))
    }

    /// The handler has returned: leave the hub, send our Close (`frame`, or
    /// 1008 to an evicted connection; a no-op if one was sent already), then
    /// wait a little for the peer's so the closing handshake completes.
    pub async fn finish(mut self, frame: CloseFrame) {
        drop(self.membership.take());
        if self.broken {
            return;
        }
        let frame = if self.evicted() {
            CloseFrame {
                code: CloseCode::Policy,
                reason: TOO_SLOW.into(),
            }
        } else {
            frame
        };
        let handshake = async {
            let _ = self.ws.close(Some(frame)).await;
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(self.close_timeout, handshake).await;
    }

    /// Write `msg` (if any) and flush (if asked). A connection its hub evicts
    /// while the write waits for a peer that does not read is abandoned
    /// mid-write.
    async fn write(&mut self, msg: Option<Message>, flush: bool) -> Result<(), Error> {
        let ws = &mut self.ws;
        let io = async move {
            if let Some(msg) = msg {
                ws.feed(msg).await?;
            }
            if flush {
                ws.flush().await?;
            }
            Ok(())
        };
        let armed = !self.host_closed;
        let written = tokio::select! {
            // Biased: a write that completes at once never polls the
            // eviction future (no waker registered on the hot path).
            biased;
            written = io => written,
            _ = self.mailbox.evicted(), if armed => {
                self.broken = true;
                return Err(Error::PeerClosed);
            }
        };
        written.map_err(|e| self.write_failed(e))
    }

    /// The host ends the connection itself (1001 at shutdown, 1008 when
    /// evicted): send the peer `code` and hand the guest the same Close frame,
    /// so it ends as if the peer had closed. The peer's reply reaches the
    /// guest's next `recv`.
    async fn host_close(&mut self, code: CloseCode, reason: &'static str) -> Frame {
        self.host_closed = true;
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let sent = tokio::time::timeout(self.close_timeout, self.ws.close(Some(frame))).await;
        if sent.is_err() {
            self.broken = true;
        }
        Frame {
            opcode: Opcode::Close,
            data: Vec::new(),
            fin: true,
            close: Some(CloseInfo {
                code: code.into(),
                reason: reason.into(),
            }),
        }
    }

    /// Turn an incoming message into what the guest sees; `None` for control
    /// frames the host handles itself (tungstenite has queued the pong).
    async fn deliver(&mut self, msg: Message) -> Option<Frame> {
        let (opcode, data, close) = match msg {
            Message::Text(text) => (Opcode::Text, Bytes::from(text).into(), None),
            Message::Binary(data) => (Opcode::Binary, data.into(), None),
            Message::Close(frame) => {
                // Our reply is queued; send it now, whatever the guest does next.
                let _ = self.ws.flush().await;
                let close = frame.map(|f| CloseInfo {
                    code: f.code.into(),
                    reason: f.reason.to_string(),
                });
                (Opcode::Close, Vec::new(), close)
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return None,
        };
        Some(Frame {
            opcode,
            data,
            fin: true,
            close,
        })
    }

    /// The peer broke the protocol or the socket failed: tell the peer why
    /// with the RFC 6455 close code when it can still hear it, then the guest.
    async fn read_failed(&mut self, e: tungstenite::Error) -> Result<Option<Frame>, Error> {
        use tungstenite::Error as E;
        self.peer_gone = true;
        let (code, err) = match e {
            // The peer vanished without a Close frame: it has gone, as in
            // the seed's `''`, and there is no one left to tell anything.
            E::ConnectionClosed
            | E::AlreadyClosed
            | E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return Ok(None),
            E::Io(io) if is_disconnect(&io) => return Ok(None),
            E::Io(io) => return Err(Error::Io(io.to_string())),
            E::Capacity(c) => {
                tracing::debug!("peer's message refused: {c}");
                (CloseCode::Size, Error::TooLarge)
            }
            E::Utf8(_) => (
                CloseCode::Invalid,
                Error::Protocol("text message is not valid UTF-8".into()),
            ),
            E::Protocol(p) => (CloseCode::Protocol, Error::Protocol(p.to_string())),
            other => (CloseCode::Protocol, Error::Protocol(other.to_string())),
        };
        let reason = match &err {
            Error::Protocol(why) => truncate(why, MAX_CLOSE_REASON).to_string(),
            _ => "message too big".to_string(),
        };
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(self.close_timeout, self.ws.close(Some(frame))).await;
        Err(err)
    }

    fn write_failed(&mut self, e: tungstenite::Error) -> Error {
        use tungstenite::Error as E;
        match e {
            E::ConnectionClosed
            | E::AlreadyClosed
            | E::Protocol(ProtocolError::SendAfterClosing) => Error::PeerClosed,
            E::Io(io) if is_disconnect(&io) => {
                self.peer_gone = true;
                Error::PeerClosed
            }
            E::Capacity(_) => Error::TooLarge,
            other => Error::Io(other.to_string()),
        }
    }

    /// Check a push against the fragmentation state and build its message.
    fn outgoing(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<Message, Error> {
        let protocol = |why: &str| Err(Error::Protocol(why.to_string()));
        let fragment = |data, kind, fin| {
            Message::Frame(tungstenite::protocol::frame::Frame::message(
                data,
                OpCode::Data(kind),
                fin,
            ))
        };
        match (op, fin) {
            (Opcode::Text | Opcode::Binary, _) if self.fragmenting => {
                protocol("a fragmented message is under way: continue it with opcode continuation")
            }
            (Opcode::Text, true) => Ok(Message::Text(text(data)?)),
            (Opcode::Binary, true) => Ok(Message::Binary(data.into())),
            (Opcode::Text, false) => {
                self.fragmenting = true;
                Ok(fragment(data, Data::Text, false))
            }
            (Opcode::Binary, false) => {
                self.fragmenting = true;
                Ok(fragment(data, Data::Binary, false))
            }
            (Opcode::Continuation, _) if !self.fragmenting => {
                protocol("continuation without a fragmented message under way")
            }
            (Opcode::Continuation, fin) => {
                self.fragmenting = !fin;
                Ok(fragment(data, Data::Continue, fin))
            }
            (Opcode::Ping | Opcode::Pong, false) => protocol("control frames cannot be fragmented"),
            (Opcode::Ping | Opcode::Pong, true) if data.len() > 125 => {
                protocol("control frames carry at most 125 bytes")
            }
            (Opcode::Ping, true) => Ok(Message::Ping(data.into())),
            (Opcode::Pong, true) => Ok(Message::Pong(data.into())),
            (Opcode::Close, _) => protocol("send Close frames with push-close"),
        }
    }
}

/// `data` as the payload of a text message, if it is UTF-8.
pub fn text(data: Vec<u8>) -> Result<Utf8Bytes, Error> {
    Utf8Bytes::try_from(Bytes::from(data))
        .map_err(|_| Error::Protocol("text is not valid UTF-8".into()))
}

/// Resolves once `flag` is true; never, if its sender goes first.
pub async fn turned_true(flag: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it before awaiting again.
    let sender_gone = flag.wait_for(|&set| set).await.is_err();
    if sender_gone {
        std::future::pending::<()>().await;
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("привет", 3), "п");
        assert_eq!(truncate("ok", 10), "ok");
    }
}
