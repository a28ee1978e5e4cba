//! A handler-world connection once upgraded: the guest's `recv` and `push`
//! on the shared [`Socket`], with its hub membership and topic
//! subscriptions.
//!
//! The guest's `recv` reads the socket directly (no task or channel between
//! the guest and its own socket). Hub and topic messages wait in the outbox
//! and are written between the guest's own frames, by `recv` and `push`.

use crate::bindings::{CloseInfo, Error, Frame, Opcode};
use crate::frame::{self, Kind};
use crate::hub::Membership;
use crate::socket::{GOING_AWAY, Incoming, Socket, TOO_SLOW, sleep_until, turned_true};
use crate::topics::Subscriptions;
use crate::utf8::Utf8Fragments;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

pub struct Upgraded {
    pub socket: Socket,
    membership: Option<Membership>,
    pub subscriptions: Subscriptions,
    /// A fragmented push is under way: nothing else may be interleaved.
    fragmenting: bool,
    /// The UTF-8 check of a fragmented text push under way.
    text: Option<Utf8Fragments>,
    /// The host has sent its own Close frame (1001 or 1008).
    host_closed: bool,
}

impl Upgraded {
    pub fn new(socket: Socket, membership: Membership, subscriptions: Subscriptions) -> Self {
        Upgraded {
            socket,
            membership: Some(membership),
            subscriptions,
            fragmenting: false,
            text: None,
            host_closed: false,
        }
    }

    pub fn broken(&self) -> bool {
        self.socket.broken
    }

    /// The next message for the guest; see `connection.recv` in the WIT.
    pub async fn recv(
        &mut self,
        deadline: Option<Instant>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Frame>, Error> {
        if self.socket.peer_gone || self.socket.broken {
            return Ok(None);
        }
        loop {
            if self.socket.outbox.is_evicted() && !self.host_closed {
                return Ok(Some(self.host_close(CloseCode::Policy, TOO_SLOW).await));
            }
            if *shutdown.borrow() && !self.host_closed {
                return Ok(Some(self.host_close(CloseCode::Away, GOING_AWAY).await));
            }
            if deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(Error::Timeout);
            }
            // What is queued goes out before more is read: a connection whose
            // own messages fill its outbox (a broadcaster) slows its reading
            // down to its writing instead of overflowing.
            if self.may_write_queued() {
                self.socket.write_queued(None).await?;
            }
            let outbox = self.socket.outbox.clone();
            // Biased: when a message is already there, the other branches'
            // futures are never polled, so the hot path registers no wakers.
            // The flags they watch are also checked above, so none starves.
            tokio::select! {
                biased;
                read = self.socket.next() => {
                    if let Some(incoming) = self.socket.incoming(read).await {
                        return deliver(incoming);
                    }
                }
                // A frame or an eviction, acted on at the top of the loop.
                _ = outbox.ready(), if self.may_write_queued() => {}
                // Frames cannot go out now; an eviction still ends the wait.
                _ = outbox.evicted(), if !self.may_write_queued() && !self.host_closed => {}
                _ = turned_true(shutdown), if !self.host_closed => {}
                _ = sleep_until(deadline) => return Err(Error::Timeout),
            }
        }
    }

    /// Queued frames may go out: no fragmented push under way and no Close sent.
    fn may_write_queued(&self) -> bool {
        !self.fragmenting && !self.socket.closing
    }

    /// Send the guest's frame, after the frames queued for this connection
    /// (unless a fragmented message is under way).
    pub async fn push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        if self.socket.peer_gone || self.socket.broken {
            return Err(Error::PeerClosed);
        }
        if self.socket.outbox.is_evicted() && !self.host_closed {
            self.host_close(CloseCode::Policy, TOO_SLOW).await;
            return Err(Error::PeerClosed);
        }
        let was_fragmenting = self.fragmenting;
        let frame = self.outgoing(data, op, fin)?;
        if was_fragmenting {
            self.socket.write_frames(&[frame]).await
        } else {
            self.socket.write_queued(Some(frame)).await
        }
    }

    /// Send the guest's Close frame.
    pub async fn push_close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        self.socket.send_close(code, reason).await
    }

    /// The handler has returned: leave the hub and the topics, then close
    /// the socket with `code` (see [`Socket::finish`]).
    pub async fn finish(mut self, code: CloseCode, reason: &str) {
        drop(self.membership.take());
        drop(self.subscriptions);
        self.socket.finish(code, reason).await;
    }

    /// The host ends the connection itself: send the peer `code` and hand
    /// the guest the same Close frame, so it ends as if the peer had closed.
    /// The peer's reply reaches the guest's next `recv`.
    async fn host_close(&mut self, code: CloseCode, reason: &'static str) -> Frame {
        self.host_closed = true;
        self.socket.host_close(code, reason).await;
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

    /// Check a push against the fragmentation state and frame it.
    fn outgoing(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<Bytes, Error> {
        let protocol = |why: &str| Err(Error::Protocol(why.to_string()));
        let kind = match (op, fin) {
            (Opcode::Text | Opcode::Binary, _) if self.fragmenting => {
                return protocol(
                    "a fragmented message is under way: continue it with opcode continuation",
                );
            }
            (Opcode::Text, true) => {
                check_text(&data)?;
                Kind::Text
            }
            (Opcode::Text, false) => {
                let mut text = Utf8Fragments::default();
                text.feed(&data, false).map_err(|_| not_utf8())?;
                self.text = Some(text);
                Kind::Text
            }
            (Opcode::Binary, _) => Kind::Binary,
            (Opcode::Continuation, _) if !self.fragmenting => {
                return protocol("continuation without a fragmented message under way");
            }
            (Opcode::Continuation, _) => {
                if let Some(text) = &mut self.text {
                    text.feed(&data, fin).map_err(|_| not_utf8())?;
                }
                Kind::Continuation
            }
            (Opcode::Ping | Opcode::Pong, false) => {
                return protocol("control frames cannot be fragmented");
            }
            (Opcode::Ping | Opcode::Pong, true) if data.len() > 125 => {
                return protocol("control frames carry at most 125 bytes");
            }
            (Opcode::Ping, true) => Kind::Ping,
            (Opcode::Pong, true) => Kind::Pong,
            (Opcode::Close, _) => return protocol("send Close frames with push-close"),
        };
        if matches!(kind, Kind::Text | Kind::Binary | Kind::Continuation) {
            self.fragmenting = !fin;
            if fin {
                self.text = None;
            }
        }
        Ok(frame::encode(kind, fin, &data))
    }
}

/// What the guest's `recv` returns for what came from the peer.
fn deliver(incoming: Incoming) -> Result<Option<Frame>, Error> {
    let (opcode, data, close) = match incoming {
        Incoming::Message(Message::Text(text)) => (Opcode::Text, Bytes::from(text).into(), None),
        Incoming::Message(msg) => (Opcode::Binary, msg.into_data().into(), None),
        Incoming::Close(close) => (Opcode::Close, Vec::new(), close),
        Incoming::Gone => return Ok(None),
        Incoming::Failed { error, .. } => return Err(error),
    };
    Ok(Some(Frame {
        opcode,
        data,
        fin: true,
        close,
    }))
}

/// A text message's payload must be UTF-8.
pub fn check_text(data: &[u8]) -> Result<(), Error> {
    std::str::from_utf8(data).map(drop).map_err(|_| not_utf8())
}

fn not_utf8() -> Error {
    Error::Protocol("text is not valid UTF-8".into())
}
