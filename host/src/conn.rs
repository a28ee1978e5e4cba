//! The connection of one request, as its handler drives it through the
//! `connection` and `hub` imports: pending → upgraded or responded → closed.
//!
//! The guest's `recv` reads the socket directly (no task or channel between
//! the guest and its own socket); messages other connections send through the
//! hub wait in a bounded mailbox that `recv` and `push` drain into the socket.

use crate::bindings::wshost::websocket::{connection, hub as hub_api, types};
use crate::bindings::{CloseInfo, ConnectionId, Error, Frame, Opcode};
use crate::config::Limits;
use crate::http::{self, RequestHead};
use crate::hub::{Hub, Membership, SendError};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Message, Utf8Bytes};

/// The longest reason a Close frame can carry (125-byte payload less the code).
const MAX_CLOSE_REASON: usize = 123;

/// The reason of the 1001 Close frame sent when the server shuts down.
const GOING_AWAY: &str = "server shutting down";

pub struct Conn {
    id: ConnectionId,
    limits: Arc<Limits>,
    hub: Arc<Hub>,
    phase: Phase,
    /// Turns true when the server shuts down.
    shutdown: watch::Receiver<bool>,
}

enum Phase {
    /// The request waits for `upgrade` or `respond`.
    Pending {
        stream: TcpStream,
        head: RequestHead,
        early: Vec<u8>,
    },
    Upgraded(Box<Upgraded>),
    /// Answered over HTTP (by the handler, or by the host refusing a handshake).
    Responded,
    /// TCP dropped by `close`, or the socket failed.
    Closed,
}

struct Upgraded {
    ws: WebSocketStream<TcpStream>,
    /// Hub messages for this connection; written between the guest's own frames.
    mailbox: mpsc::Receiver<Message>,
    _membership: Membership,
    /// A fragmented push is under way: nothing else may be interleaved.
    fragmenting: bool,
    /// Reads have ended: the peer closed or the socket failed.
    peer_gone: bool,
    /// The host has sent 1001 because the server shuts down.
    going_away: bool,
}

/// How a handler's run ended, which decides what the host still owes the peer.
pub enum Outcome {
    Returned,
    /// The handler returned an error or trapped.
    Failed(String),
}

impl Conn {
    pub fn new(
        id: ConnectionId,
        limits: Arc<Limits>,
        hub: Arc<Hub>,
        stream: TcpStream,
        head: RequestHead,
        early: Vec<u8>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Conn {
            id,
            limits,
            hub,
            phase: Phase::Pending {
                stream,
                head,
                early,
            },
            shutdown,
        }
    }

    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// After the handler has run: answer a request it left unanswered (500),
    /// or end an upgraded connection with a Close frame (1000, or 1011 on failure).
    pub async fn finish(self, outcome: Outcome) {
        match self.phase {
            Phase::Pending { mut stream, .. } => {
                let body = match &outcome {
                    Outcome::Returned => {
                        "the handler returned without upgrading or responding\n".to_string()
                    }
                    Outcome::Failed(why) => format!("the handler failed: {why}\n"),
                };
                let _ = http::send_and_finish(
                    &mut stream,
                    &http::response(500, &[], body.as_bytes(), false),
                )
                .await;
            }
            Phase::Upgraded(mut up) => {
                let frame = match &outcome {
                    Outcome::Returned => CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    },
                    Outcome::Failed(why) => CloseFrame {
                        code: CloseCode::Error,
                        reason: truncate(why, MAX_CLOSE_REASON).into(),
                    },
                };
                drop(up._membership);
                // Send our Close (a no-op if one was sent already), then wait a
                // little for the peer's, so the closing handshake completes.
                let handshake = async {
                    let _ = up.ws.close(Some(frame)).await;
                    while let Some(Ok(_)) = up.ws.next().await {}
                };
                let _ = tokio::time::timeout(self.limits.close_timeout, handshake).await;
            }
            Phase::Responded | Phase::Closed => {}
        }
    }

    fn upgraded(&mut self) -> Result<&mut Upgraded, Error> {
        match &mut self.phase {
            Phase::Upgraded(up) => Ok(up),
            Phase::Closed => Err(Error::PeerClosed),
            Phase::Pending { .. } | Phase::Responded => Err(Error::NotUpgraded),
        }
    }

    async fn do_upgrade(&mut self) -> Result<(), Error> {
        let (mut stream, head, early) = match std::mem::replace(&mut self.phase, Phase::Responded) {
            Phase::Pending {
                stream,
                head,
                early,
            } => (stream, head, early),
            other => {
                let closed = matches!(other, Phase::Closed);
                self.phase = other;
                return Err(if closed {
                    Error::PeerClosed
                } else {
                    Error::AlreadyAnswered
                });
            }
        };
        let accept = match http::accept_key(&head) {
            Ok(accept) => accept,
            Err(refusal) => {
                let _ = http::send_and_finish(&mut stream, &refusal.response()).await;
                return Err(Error::Protocol(refusal.to_string()));
            }
        };
        // Join before the 101 goes out: once the client sees it, broadcasts
        // from other connections must already reach this one.
        let (membership, mailbox) = self.hub.join(self.id);
        if let Err(e) =
            tokio::io::AsyncWriteExt::write_all(&mut stream, &http::switching_protocols(&accept))
                .await
        {
            self.phase = Phase::Closed;
            return Err(Error::Io(e.to_string()));
        }
        let ws = WebSocketStream::from_partially_read(
            stream,
            early,
            Role::Server,
            Some(self.limits.websocket_config()),
        )
        .await;
        self.phase = Phase::Upgraded(Box::new(Upgraded {
            ws,
            mailbox,
            _membership: membership,
            fragmenting: false,
            peer_gone: false,
            going_away: false,
        }));
        Ok(())
    }

    async fn do_recv(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>, Error> {
        let close_timeout = self.limits.close_timeout;
        let up = match &mut self.phase {
            Phase::Upgraded(up) => up,
            Phase::Closed => return Ok(None),
            Phase::Pending { .. } | Phase::Responded => return Err(Error::NotUpgraded),
        };
        let shutdown = &mut self.shutdown;
        if up.peer_gone {
            return Ok(None);
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            tokio::select! {
                incoming = up.ws.next() => match incoming {
                    Some(Ok(msg)) => {
                        if let Some(frame) = up.deliver(msg).await {
                            return Ok(Some(frame));
                        }
                    }
                    Some(Err(e)) => return up.read_failed(e, close_timeout).await,
                    None => {
                        up.peer_gone = true;
                        return Ok(None);
                    }
                },
                Some(queued) = up.mailbox.recv(), if !up.fragmenting => up.ws.send(queued).await.map_err(|e| up.write_failed(e))?,
                _ = stopping(shutdown), if !up.going_away => {
                    return Ok(Some(up.go_away(close_timeout).await));
                }
                _ = sleep_until(deadline) => return Err(Error::Timeout),
            }
        }
    }

    async fn do_push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        let max = self.limits.max_message_size;
        let up = self.upgraded()?;
        if up.peer_gone {
            return Err(Error::PeerClosed);
        }
        if data.len() > max {
            return Err(Error::TooLarge);
        }
        let msg = up.outgoing(data, op, fin)?;
        if !up.fragmenting {
            while let Ok(queued) = up.mailbox.try_recv() {
                up.ws.feed(queued).await.map_err(|e| up.write_failed(e))?;
            }
        }
        up.ws.send(msg).await.map_err(|e| up.write_failed(e))
    }

    async fn do_push_close(&mut self, code: u16, reason: String) -> Result<(), Error> {
        let up = self.upgraded()?;
        let close_code = CloseCode::from(code);
        if !close_code.is_allowed() || code < 1000 {
            return Err(Error::Protocol(format!(
                "{code} is not a close code an endpoint may send"
            )));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(Error::Protocol(format!(
                "close reason is {} bytes; at most {MAX_CLOSE_REASON}",
                reason.len()
            )));
        }
        let frame = CloseFrame {
            code: close_code,
            reason: reason.into(),
        };
        up.ws
            .close(Some(frame))
            .await
            .map_err(|e| up.write_failed(e))
    }

    async fn do_respond(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        let Phase::Pending { stream, head, .. } = &mut self.phase else {
            return Err(match self.phase {
                Phase::Closed => Error::PeerClosed,
                _ => Error::AlreadyAnswered,
            });
        };
        http::check_response(status, &headers).map_err(Error::Protocol)?;
        let bytes = http::response(status, &headers, &body, head.method == "HEAD");
        let sent = http::send_and_finish(stream, &bytes).await;
        self.phase = Phase::Responded;
        sent.map_err(|e| Error::Io(e.to_string()))
    }
}

impl Upgraded {
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

    /// The server shuts down: send the peer 1001 and hand the guest the same
    /// Close frame, so it ends as if the peer had closed. The peer's reply
    /// reaches the guest's next `recv`.
    async fn go_away(&mut self, close_timeout: Duration) -> Frame {
        self.going_away = true;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: GOING_AWAY.into(),
        };
        let _ = tokio::time::timeout(close_timeout, self.ws.close(Some(frame))).await;
        Frame {
            opcode: Opcode::Close,
            data: Vec::new(),
            fin: true,
            close: Some(CloseInfo {
                code: CloseCode::Away.into(),
                reason: GOING_AWAY.into(),
            }),
        }
    }

    /// The peer broke the protocol or the socket failed: tell the peer why
    /// with the RFC 6455 close code when it can still hear it, then the guest.
    async fn read_failed(
        &mut self,
        e: tungstenite::Error,
        close_timeout: Duration,
    ) -> Result<Option<Frame>, Error> {
        use tungstenite::Error as E;
        self.peer_gone = true;
        let (code, err) = match e {
            E::ConnectionClosed | E::AlreadyClosed => return Ok(None),
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
        let _ = tokio::time::timeout(
            close_timeout,
            self.ws.close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        )
        .await;
        Err(err)
    }

    fn write_failed(&mut self, e: tungstenite::Error) -> Error {
        use tungstenite::Error as E;
        match e {
            E::ConnectionClosed
            | E::AlreadyClosed
            | E::Protocol(tungstenite::error::ProtocolError::SendAfterClosing) => Error::PeerClosed,
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
        match (op, fin) {
            (Opcode::Text | Opcode::Binary, _) if self.fragmenting => {
                protocol("a fragmented message is under way: continue it with opcode continuation")
            }
            (Opcode::Text, true) => Ok(Message::Text(text(data)?)),
            (Opcode::Binary, true) => Ok(Message::Binary(data.into())),
            (Opcode::Text, false) => {
                self.fragmenting = true;
                Ok(Message::Frame(
                    tungstenite::protocol::frame::Frame::message(
                        data,
                        OpCode::Data(Data::Text),
                        false,
                    ),
                ))
            }
            (Opcode::Binary, false) => {
                self.fragmenting = true;
                Ok(Message::Frame(
                    tungstenite::protocol::frame::Frame::message(
                        data,
                        OpCode::Data(Data::Binary),
                        false,
                    ),
                ))
            }
            (Opcode::Continuation, _) if !self.fragmenting => {
                protocol("continuation without a fragmented message under way")
            }
            (Opcode::Continuation, fin) => {
                self.fragmenting = !fin;
                Ok(Message::Frame(
                    tungstenite::protocol::frame::Frame::message(
                        data,
                        OpCode::Data(Data::Continue),
                        fin,
                    ),
                ))
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

/// A whole message for the hub: text or binary only.
fn hub_message(data: Vec<u8>, op: Opcode, max: usize) -> Result<Message, Error> {
    if data.len() > max {
        return Err(Error::TooLarge);
    }
    match op {
        Opcode::Text => Ok(Message::Text(text(data)?)),
        Opcode::Binary => Ok(Message::Binary(data.into())),
        _ => Err(Error::Protocol("hub messages are text or binary".into())),
    }
}

fn text(data: Vec<u8>) -> Result<Utf8Bytes, Error> {
    Utf8Bytes::try_from(Bytes::from(data))
        .map_err(|_| Error::Protocol("text is not valid UTF-8".into()))
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Resolves once the server shuts down.
pub async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // An error means the server is gone, a shutdown too. The guard `wait_for`
    // returns is not `Send`, so it is dropped here, before any other await.
    let _ = shutdown.wait_for(|&stopping| stopping).await.map(drop);
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Cut `s` to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl types::Host for Conn {}

impl connection::Host for Conn {
    async fn id(&mut self) -> ConnectionId {
        self.id
    }

    async fn upgrade(&mut self) -> Result<(), Error> {
        self.do_upgrade().await
    }

    async fn recv(&mut self, timeout_ms: Option<u32>) -> Result<Option<Frame>, Error> {
        self.do_recv(timeout_ms.map(|ms| Duration::from_millis(ms.into())))
            .await
    }

    async fn push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        self.do_push(data, op, fin).await
    }

    async fn push_close(&mut self, code: u16, reason: String) -> Result<(), Error> {
        self.do_push_close(code, reason).await
    }

    async fn close(&mut self) {
        // Dropping the socket sends FIN (or RST with unread input): no Close frame.
        self.phase = Phase::Closed;
    }

    async fn respond(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        self.do_respond(status, headers, body).await
    }
}

impl hub_api::Host for Conn {
    async fn connections(&mut self) -> Vec<ConnectionId> {
        self.hub.ids()
    }

    async fn send_to(
        &mut self,
        target: ConnectionId,
        data: Vec<u8>,
        op: Opcode,
    ) -> Result<(), Error> {
        let msg = hub_message(data, op, self.limits.max_message_size)?;
        self.hub.send_to(target, msg).map_err(|e| match e {
            SendError::UnknownConnection(_) => Error::UnknownConnection,
            SendError::QueueFull(_) => Error::QueueFull,
        })
    }

    async fn broadcast(&mut self, data: Vec<u8>, op: Opcode) -> Result<u32, Error> {
        let msg = hub_message(data, op, self.limits.max_message_size)?;
        Ok(self.hub.broadcast(&msg))
    }
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
