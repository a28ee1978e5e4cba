//! The connection of one request, as its handler drives it through the
//! `connection` and `hub` imports: pending → upgraded or responded → closed.
//! What happens on the upgraded socket is in [`crate::websocket`].

use crate::bindings::wshost::websocket::{connection, hub as hub_api, types};
use crate::bindings::{ConnectionId, Error, Frame, Opcode};
use crate::config::Limits;
use crate::http::{self, RequestHead};
use crate::hub::{Hub, SendError};
use crate::read_ahead::ReadAhead;
use crate::websocket::{self, MAX_CLOSE_REASON, Upgraded, truncate};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};

pub struct Conn {
    id: ConnectionId,
    limits: Arc<Limits>,
    hub: Arc<Hub>,
    phase: Phase,
    /// `upgrade` found no valid handshake and the host answered 400 or 426.
    refused_handshake: bool,
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
            refused_handshake: false,
            shutdown,
        }
    }

    /// The request was not a valid WebSocket handshake and the host has
    /// answered it so (400/426): a handler error after that is the client's
    /// mistake passed on, not the handler's.
    pub fn refused_handshake(&self) -> bool {
        self.refused_handshake
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
            Phase::Upgraded(up) => {
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
                up.finish(frame).await;
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
                self.refused_handshake = true;
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
            ReadAhead::new(stream),
            early,
            Role::Server,
            Some(self.limits.websocket_config()),
        )
        .await;
        let up = Upgraded::new(ws, mailbox, membership, self.limits.close_timeout);
        self.phase = Phase::Upgraded(Box::new(up));
        Ok(())
    }

    async fn do_recv(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>, Error> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let up = match &mut self.phase {
            Phase::Upgraded(up) => up,
            Phase::Closed => return Ok(None),
            Phase::Pending { .. } | Phase::Responded => return Err(Error::NotUpgraded),
        };
        let received = up.recv(deadline, &mut self.shutdown).await;
        self.drop_if_broken();
        received
    }

    async fn do_push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        if data.len() > self.limits.max_message_size {
            return Err(Error::TooLarge);
        }
        let pushed = self.upgraded()?.push(data, op, fin).await;
        self.drop_if_broken();
        pushed
    }

    /// A write was abandoned half-way: nothing more can be sent, drop TCP.
    fn drop_if_broken(&mut self) {
        if matches!(&self.phase, Phase::Upgraded(up) if up.broken) {
            self.phase = Phase::Closed;
        }
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
        up.push_close(frame).await
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

/// A whole message for the hub: text or binary only.
fn hub_message(data: Vec<u8>, op: Opcode, max: usize) -> Result<Message, Error> {
    if data.len() > max {
        return Err(Error::TooLarge);
    }
    match op {
        Opcode::Text => Ok(Message::Text(websocket::text(data)?)),
        Opcode::Binary => Ok(Message::Binary(data.into())),
        _ => Err(Error::Protocol("hub messages are text or binary".into())),
    }
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
