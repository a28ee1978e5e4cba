//! A handler-world connection once upgraded: the guest's `recv` and `push`,
//! with its hub membership and topic subscriptions.
//!
//! The socket belongs to its pump ([`crate::ws::pump`]: beside the guest in
//! the guest's task, [`crate::world::beside`], or a task of its own), which
//! reads the peer's messages into the connection's [`Inbox`] and writes its
//! [`Outbox`]: the guest's pushes and, between them, hub and topic
//! messages. So pings are answered, the queue written and a silent peer
//! found even while the guest computes between calls.

use crate::bindings::{CloseInfo, ConnectionId, Error, Frame, Opcode};
use crate::pubsub::hub::Membership;
use crate::pubsub::topics::Subscriptions;
use crate::world::beside::Side;
use crate::ws::alarms::Shutdown;
use crate::ws::frame::{self, Kind};
use crate::ws::inbox::{Delivery, Inbox};
use crate::ws::outbox::{Batch, Ending, Outbox};
use crate::ws::pump::{self, Consumer};
use crate::ws::reader::Held;
use crate::ws::socket::Socket;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::Instrument;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wshost_proto::utf8::Utf8Fragments;

/// Pushes this large go out without being copied into their frame.
const UNCOPIED: usize = 16 << 10;

pub struct Upgraded {
    outbox: Arc<Outbox>,
    inbox: Arc<Inbox>,
    membership: Option<Membership>,
    pub subscriptions: Subscriptions,
    /// A fragmented push is under way: only continuations may follow.
    fragmenting: bool,
    /// The UTF-8 check of a fragmented text push under way.
    text: Option<Utf8Fragments>,
    /// Resolves once the socket's pump has ended (the socket closed).
    pump_ended: oneshot::Receiver<()>,
    /// The socket compresses what it sends: frames must be whole.
    deflate: bool,
}

/// The guest takes the peer's messages from its inbox.
struct Guest(Arc<Inbox>);

/// Held by a socket's task: when it goes, by any path, the outbox takes no
/// more pushes and the inbox says the connection has ended.
struct Ended {
    inbox: Arc<Inbox>,
    outbox: Arc<Outbox>,
    /// Dropped last: [`Upgraded::finish`] waits for it.
    _gone: oneshot::Sender<()>,
}

impl Drop for Ended {
    fn drop(&mut self) {
        self.outbox.finish();
        self.inbox.end();
    }
}

impl Consumer for Guest {
    fn has_room(&self) -> bool {
        self.0.has_room()
    }

    async fn room(&mut self) {
        self.0.room().await
    }

    async fn message(&mut self, msg: Message, held: Held) {
        self.0.put(Delivery::Message(msg, held));
    }

    fn host_closed(&mut self, code: CloseCode, reason: &str) {
        let close = CloseInfo {
            code: code.into(),
            reason: reason.into(),
        };
        self.0.put(Delivery::Close(Some(close)));
    }

    fn peer_closed(&mut self, close: Option<CloseInfo>) {
        self.0.put(Delivery::Close(close));
    }

    fn failed(&mut self, error: &Error) {
        self.0.put(Delivery::Failed(error.clone()));
    }
}

impl Upgraded {
    /// Hand `socket` to its pump, in a task of its own or (given `side`)
    /// beside the guest, and keep the guest's ends.
    pub fn start(
        socket: Socket,
        id: ConnectionId,
        (membership, subscriptions): (Membership, Subscriptions),
        shutdown: Shutdown,
        side: Option<&Side>,
    ) -> Self {
        let inbox = Arc::new(Inbox::default());
        let outbox = socket.outbox.clone();
        let deflate = socket.compresses();
        let mut guest = Guest(inbox.clone());
        let (gone, pump_ended) = oneshot::channel();
        // However the pump ends (it returned, panicked, or was dropped),
        // the guest hears that the connection has ended and its pushes
        // fail: a guest never waits on a socket that is gone.
        let ended = Ended {
            inbox: inbox.clone(),
            outbox: outbox.clone(),
            _gone: gone,
        };
        // Made when the pump first runs: made here, on the guest's fiber
        // stack, this future (several KiB) would leave those stack pages
        // resident in every instance (measured: +11 KiB per idle
        // handler-world connection).
        // The block uses its captures in place: rebound to locals (`let
        // mut socket = socket`), they would take their room twice.
        let pump = move || {
            let mut socket = socket;
            async move {
                let run = Box::pin(pump::run_guarded(&mut socket, &mut guest, id, &shutdown));
                let (code, _) = run.await;
                tracing::debug!("connection {id} closed ({code})");
                // TCP is closed before the guest hears of it.
                socket.outbox.finish();
                drop(socket);
                drop(ended);
            }
        };
        match side {
            Some(side) => side.put(move || Box::pin(pump())),
            None => {
                tokio::spawn(pump().instrument(tracing::Span::current()));
            }
        }
        Upgraded {
            outbox,
            inbox,
            membership: Some(membership),
            subscriptions,
            fragmenting: false,
            text: None,
            pump_ended,
            deflate,
        }
    }

    /// The next delivery for the guest, as the inbox holds it (see
    /// `connection.recv` in the WIT; [`deliver`] makes it a frame). A
    /// deadline already past polls: what has arrived is still returned.
    pub async fn recv_delivery(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Delivery>, Error> {
        next_delivery(&self.inbox, deadline).await
    }

    /// The connection's inbox, for a `recv` that waits without holding the
    /// connection (the coro world: a pending `recv` is most of a task).
    pub fn inbox(&self) -> Arc<Inbox> {
        self.inbox.clone()
    }

    /// Queue the guest's frame, after the frames queued for this connection
    /// (none lands between the fragments of a fragmented push). Returns the
    /// outbox when it holds more than the backpressure limit: the push is
    /// to wait for its room (a peer that reads slowly slows its guest down).
    pub fn queue(
        &mut self,
        data: Vec<u8>,
        op: Opcode,
        fin: bool,
    ) -> Result<Option<Arc<Outbox>>, Error> {
        self.queue_bytes(Bytes::from(data), op, fin, false)
    }

    /// [`Upgraded::queue`] of a message the guest left with the host
    /// (`messages.push`): whole, its text checked when it arrived.
    pub fn queue_held(&mut self, data: Bytes, text: bool) -> Result<Option<Arc<Outbox>>, Error> {
        let op = if text { Opcode::Text } else { Opcode::Binary };
        self.queue_bytes(data, op, true, true)
    }

    fn queue_bytes(
        &mut self,
        data: Bytes,
        op: Opcode,
        fin: bool,
        checked: bool,
    ) -> Result<Option<Arc<Outbox>>, Error> {
        let (frame, fragmenting) = self.outgoing(data, op, fin, checked)?;
        if self.outbox.push(frame, fragmenting).is_err() {
            return Err(Error::PeerClosed);
        }
        self.fragmenting = fragmenting;
        if !fragmenting {
            self.text = None;
        }
        Ok(self.outbox.is_backed_up().then(|| self.outbox.clone()))
    }

    /// Send the guest's Close frame after what is queued; returns once it
    /// is written (a `close` right after must not cut it off).
    pub async fn push_close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        if self.outbox.is_finished() {
            return Err(Error::PeerClosed);
        }
        self.outbox.end(Ending::Close {
            code,
            reason: reason.into(),
        });
        self.outbox.close_written().await;
        Ok(())
    }

    /// The handler has returned: leave the hub and the topics, then end the
    /// connection with `code` after what is queued (a Close already sent, by
    /// the guest or the host, stands) and wait for the closing handshake.
    pub async fn finish(mut self, code: CloseCode, reason: &str) {
        drop(self.membership.take());
        self.subscriptions.clear();
        self.outbox.end(Ending::Close {
            code: code.into(),
            reason: reason.into(),
        });
        let _ = (&mut self.pump_ended).await;
    }

    /// Check a push against the fragmentation state and frame it; returns
    /// the frame (a large payload in a part of its own, not copied) and
    /// whether a fragmented message is under way after it. `checked`: a
    /// whole text the host has already found UTF-8.
    fn outgoing(
        &mut self,
        data: Bytes,
        op: Opcode,
        fin: bool,
        checked: bool,
    ) -> Result<(Batch, bool), Error> {
        let protocol = |why: &str| Err(Error::Protocol(why.to_string()));
        let kind = match (op, fin) {
            (Opcode::Text | Opcode::Binary, _) if self.fragmenting => {
                return protocol(
                    "a fragmented message is under way: continue it with opcode continuation",
                );
            }
            (Opcode::Text, true) => {
                if !checked {
                    check_text(&data)?;
                }
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
        let fragmenting = match kind {
            Kind::Text | Kind::Binary | Kind::Continuation => !fin,
            // A control frame may go between fragments.
            Kind::Ping | Kind::Pong => self.fragmenting,
        };
        let parts = if data.len() >= UNCOPIED && !self.deflate {
            let header = frame::header(kind, fin, data.len());
            [header, data].into_iter().collect()
        } else {
            [frame::encode(kind, fin, &data)].into_iter().collect()
        };
        Ok((parts, fragmenting))
    }
}

impl Drop for Upgraded {
    /// Dropped without [`Upgraded::finish`] (the guest's `close`): drop TCP.
    fn drop(&mut self) {
        self.outbox.end(Ending::Terminate);
    }
}

/// The next message in `inbox`, waiting until `deadline` (none: forever).
pub async fn recv_from(inbox: &Inbox, deadline: Option<Instant>) -> Result<Option<Frame>, Error> {
    match next_delivery(inbox, deadline).await? {
        Some(delivery) => deliver(delivery),
        None => Ok(None),
    }
}

/// What [`recv_from`] delivers, as the inbox holds it: `None` once the
/// connection has ended and all was taken.
pub async fn next_delivery(
    inbox: &Inbox,
    deadline: Option<Instant>,
) -> Result<Option<Delivery>, Error> {
    loop {
        if let Some(taken) = inbox.take() {
            return Ok(taken);
        }
        let Some(at) = deadline else {
            // Without a timer in its state: what every idle task waits in.
            inbox.arrival().await;
            continue;
        };
        if Instant::now() >= at {
            return Err(Error::Timeout);
        }
        // Boxed: a timer in this future's own state would enlarge every
        // waiting recv, with a timeout or not.
        Box::pin(arrival_until(inbox, at)).await;
    }
}

/// Until something arrives in `inbox`, or `at`.
async fn arrival_until(inbox: &Inbox, at: Instant) {
    tokio::select! {
        () = inbox.arrival() => {}
        () = tokio::time::sleep_until(at) => {}
    }
}

/// What the guest's `recv` returns for what came from the peer.
pub fn deliver(delivery: Delivery) -> Result<Option<Frame>, Error> {
    let (opcode, data, close) = match delivery {
        // Without a copy: a message read into a buffer of its own is that
        // buffer (its share of the in-flight budget goes when it is lowered
        // into the guest).
        Delivery::Message(Message::Text(text), _held) => {
            (Opcode::Text, Bytes::from(text).into(), None)
        }
        Delivery::Message(msg, _held) => (Opcode::Binary, msg.into_data().into(), None),
        Delivery::Close(close) => (Opcode::Close, Vec::new(), close),
        Delivery::Failed(error) => return Err(error),
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
