//! The connection of one request, as its handler drives it through the
//! `connection` and `hub` imports: pending → upgraded or responded → closed.
//! What happens on the upgraded socket is in [`crate::world::upgraded`].

use crate::bindings::wshost::websocket::messages::{self, Incoming};
use crate::bindings::wshost::websocket::{
    connection, event_types, handshake, hub as hub_api, topics, types,
};
use crate::bindings::{ConnectionId, Error, Frame, HeldMessage, Message, Opcode};
use crate::meters::RouteMeters;
use crate::net::http::{self, RequestHead};
use crate::net::transport::Stream;
use crate::pubsub::hub::{Hub, SendError};
use crate::pubsub::topics::{Subscriptions, Topics};
use crate::wasm::sandbox;
use crate::world::RouteContext;
use crate::world::beside::Side;
use crate::world::held::HeldMessages;
use crate::world::limits::LimitsExt;
use crate::world::recover;
use crate::world::upgraded::{self, Upgraded};
use crate::ws::alarms::Shutdown;
use crate::ws::frame::{self, Kind};
use crate::ws::inbox::Delivery;
use crate::ws::outbox::{Cork, Outbox};
use crate::ws::socket::{MAX_CLOSE_REASON, Socket, check_close, truncate};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use wasmtime::component::Resource;
use wshost_config::Limits;

pub struct Conn {
    id: ConnectionId,
    limits: Arc<Limits>,
    hub: Arc<Hub>,
    topics: Arc<Topics>,
    meters: RouteMeters,
    phase: Phase,
    /// Messages the guest received and left with the host (`messages`).
    held: HeldMessages,
    /// `upgrade` found no valid handshake and the host answered 400 or 426.
    refused_handshake: bool,
    /// Turns true when the server shuts down.
    shutdown: Shutdown,
    /// The guest waited for a frame or its socket since the sandbox last
    /// asked: its CPU budget starts again.
    waited: bool,
    /// Where the socket's pump goes once upgraded: beside the guest in its
    /// task (the handler world), or a task of its own (`None`).
    side: Option<Arc<Side>>,
}

enum Phase {
    /// The request waits for `upgrade` or `respond` (boxed: most of a
    /// connection's life is spent upgraded, holding none of this).
    Pending(Box<Pending>),
    Upgraded(Box<Upgraded>),
    /// Answered over HTTP (by the handler, or by the host refusing a
    /// handshake); what the client still sends is drained at the end.
    Responded(Option<Stream>),
    /// TCP dropped by `close`, or the socket failed.
    Closed,
}

struct Pending {
    stream: Stream,
    head: RequestHead,
    /// What the client sent after its request head.
    early: Vec<u8>,
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
        ctx: RouteContext,
        stream: Stream,
        head: RequestHead,
        early: Vec<u8>,
        shutdown: Shutdown,
    ) -> Self {
        let RouteContext {
            limits,
            hub,
            topics,
            meters,
        } = ctx;
        Conn {
            id,
            limits,
            hub,
            topics,
            meters,
            phase: Phase::Pending(Box::new(Pending {
                stream,
                head,
                early,
            })),
            held: HeldMessages::default(),
            refused_handshake: false,
            shutdown,
            waited: false,
            side: None,
        }
    }

    /// Once upgraded, run the socket's pump through `side`, in the task
    /// that runs this connection's guest ([`crate::world::beside::run`]).
    pub fn with_pump_beside(mut self, side: Arc<Side>) -> Self {
        self.side = Some(side);
        self
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

    pub fn take_waited(&mut self) -> bool {
        std::mem::take(&mut self.waited)
    }

    /// After the handler has run: answer a request it left unanswered (500),
    /// or end an upgraded connection with a Close frame (1000, or 1011 on failure).
    pub async fn finish(self, outcome: Outcome) {
        // What the guest held goes now, not after the closing handshake.
        drop(self.held);
        match self.phase {
            Phase::Pending(pending) => {
                let mut stream = pending.stream;
                let body = match &outcome {
                    Outcome::Returned => {
                        "the handler returned without upgrading or responding\n".to_string()
                    }
                    Outcome::Failed(why) => format!("the handler failed: {why}\n"),
                };
                let response = http::response(500, &[], body.as_bytes(), false);
                http::refuse(&mut stream, &response, self.limits.write_timeout).await;
            }
            Phase::Upgraded(up) => match &outcome {
                Outcome::Returned => up.finish(CloseCode::Normal, "").await,
                Outcome::Failed(why) => {
                    up.finish(CloseCode::Error, truncate(why, MAX_CLOSE_REASON))
                        .await
                }
            },
            Phase::Responded(Some(mut stream)) => http::linger(&mut stream).await,
            Phase::Responded(None) | Phase::Closed => {}
        }
    }

    /// An upgraded connection's inbox; `None` once it is closed.
    pub fn inbox(&self) -> Result<Option<Arc<crate::ws::inbox::Inbox>>, Error> {
        match &self.phase {
            Phase::Upgraded(up) => Ok(Some(up.inbox())),
            Phase::Closed => Ok(None),
            Phase::Pending(_) | Phase::Responded(_) => Err(Error::NotUpgraded),
        }
    }

    fn upgraded(&mut self) -> Result<&mut Upgraded, Error> {
        match &mut self.phase {
            Phase::Upgraded(up) => Ok(up),
            Phase::Closed => Err(Error::PeerClosed),
            Phase::Pending(_) | Phase::Responded(_) => Err(Error::NotUpgraded),
        }
    }

    /// Upgrade with the guest's subprotocol and 101 headers, both checked
    /// before the request is taken: a refused choice leaves it pending.
    async fn do_upgrade(
        &mut self,
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<(), Error> {
        if let Phase::Pending(pending) = &self.phase {
            http::check_upgrade(&pending.head, protocol.as_deref(), &headers)
                .map_err(Error::Protocol)?;
        }
        let (mut stream, head, early) =
            match std::mem::replace(&mut self.phase, Phase::Responded(None)) {
                Phase::Pending(pending) => {
                    let Pending {
                        stream,
                        head,
                        early,
                    } = *pending;
                    (stream, head, early)
                }
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
                crate::meters::refused("bad_handshake");
                let response = refusal.response();
                let sent = http::send_and_finish(&mut stream, &response, self.limits.write_timeout);
                if sent.await.is_ok() {
                    self.phase = Phase::Responded(Some(stream));
                }
                return Err(Error::Protocol(refusal.to_string()));
            }
        };
        // Join before the 101 goes out: once the client sees it, broadcasts
        // from other connections must already reach this one.
        let outbox = Arc::new(self.limits.outbox(self.id));
        let membership = self.hub.join(self.id, outbox.clone());
        let subscriptions = Subscriptions::new(self.topics.clone(), self.id, outbox.clone());
        let (response, agreed) = http::switching_protocols(
            (&head, &accept),
            protocol.as_deref(),
            &headers,
            self.limits.deflate,
        );
        let meters = self.meters.clone();
        let opened = Socket::open(
            stream,
            (&response, early),
            agreed,
            &self.limits,
            (outbox, meters),
        );
        let socket = match opened.await {
            Ok(socket) => socket,
            Err(e) => {
                self.phase = Phase::Closed;
                return Err(Error::Io(e.to_string()));
            }
        };
        let up = Upgraded::start(
            socket,
            self.id,
            (membership, subscriptions),
            self.shutdown.clone(),
            self.side.as_deref(),
        );
        self.phase = Phase::Upgraded(Box::new(up));
        Ok(())
    }

    async fn do_recv(&mut self, timeout: Option<Duration>) -> Result<Option<Frame>, Error> {
        match self.recv_delivery(timeout).await? {
            Some(delivery) => upgraded::deliver(delivery),
            None => Ok(None),
        }
    }

    /// The next delivery, as the inbox holds it (`connection.recv` makes it
    /// a frame, `messages.recv` holds it).
    async fn recv_delivery(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Delivery>, Error> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let up = match &mut self.phase {
            Phase::Upgraded(up) => up,
            Phase::Closed => return Ok(None),
            Phase::Pending(_) | Phase::Responded(_) => return Err(Error::NotUpgraded),
        };
        up.recv_delivery(deadline).await
    }

    /// A waiting call's outcome (and whether it suspended), noted for the
    /// CPU budget: it restarts when the call really waited or did what it
    /// was asked; not when it failed at once (a push to a closed socket).
    fn waited_if<T>(&mut self, (result, suspended): (Result<T, Error>, bool)) -> Result<T, Error> {
        self.waited |= suspended || result.is_ok();
        result
    }

    async fn do_push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        if let Some(outbox) = self.push_now(data, op, fin)? {
            outbox.room().await;
        }
        Ok(())
    }

    /// `messages.push`: a held message, whole, waiting for room as `push` does.
    async fn push_held(&mut self, data: Bytes, text: bool) -> Result<(), Error> {
        if let Some(outbox) = self.upgraded()?.queue_held(data, text)? {
            outbox.room().await;
        }
        Ok(())
    }

    /// Queue a push; the outbox to wait on for room when the peer is
    /// behind (see [`Upgraded::queue`]).
    pub fn push_now(
        &mut self,
        data: Vec<u8>,
        op: Opcode,
        fin: bool,
    ) -> Result<Option<Arc<Outbox>>, Error> {
        if data.len() > self.limits.max_message_size {
            return Err(Error::TooLarge);
        }
        self.upgraded()?.queue(data, op, fin)
    }

    async fn do_push_close(&mut self, code: u16, reason: String) -> Result<(), Error> {
        let up = self.upgraded()?;
        check_close(code, &reason)?;
        up.push_close(code, &reason).await
    }

    async fn do_respond(
        &mut self,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        let Phase::Pending(pending) = &self.phase else {
            return Err(match self.phase {
                Phase::Closed => Error::PeerClosed,
                _ => Error::AlreadyAnswered,
            });
        };
        http::check_response(status, &headers).map_err(Error::Protocol)?;
        let bytes = http::response(status, &headers, &body, pending.head.method == "HEAD");
        let Phase::Pending(pending) = std::mem::replace(&mut self.phase, Phase::Responded(None))
        else {
            unreachable!("checked above");
        };
        let mut stream = pending.stream;
        let sent = http::send_and_finish(&mut stream, &bytes, self.limits.write_timeout).await;
        if sent.is_ok() {
            self.phase = Phase::Responded(Some(stream));
        }
        sent.map_err(|e| Error::Io(e.to_string()))
    }
}

/// `hub.send-to`: queue a whole message to `target` of this route (or,
/// with `--cluster`, of another process: fire and forget).
pub fn hub_send(
    hub: &Hub,
    topics: &Topics,
    target: ConnectionId,
    (data, op): (Vec<u8>, Opcode),
    max: usize,
) -> Result<(), Error> {
    hub_send_framed(hub, topics, target, hub_message(data, op, max)?)
}

/// [`hub_send`] of a message already framed.
fn hub_send_framed(
    hub: &Hub,
    topics: &Topics,
    target: ConnectionId,
    msg: Bytes,
) -> Result<(), Error> {
    match hub.send_to(target, msg.clone()) {
        Ok(()) => Ok(()),
        Err(SendError::UnknownConnection(_)) if topics.send_remote(target, &msg) => Ok(()),
        Err(SendError::UnknownConnection(_)) => Err(Error::UnknownConnection),
        Err(SendError::QueueFull(_)) => Err(Error::QueueFull),
    }
}

/// Queue one of a handler guest's publishes or broadcasts: with its task's
/// `side`, a large fan-out's writers are woken as the guest's turn ends
/// ([`Side::publish`]); without one, at once. A wait in it (for the round
/// of the turn before) is the guest's waiting: `waited` is set.
async fn fan_out<R>(
    side: Option<&Side>,
    waited: &mut bool,
    queue: impl FnOnce(&mut Cork) -> R,
) -> R {
    let Some(side) = side else {
        return queue(&mut Cork::default());
    };
    let (queued, suspended) = sandbox::suspends(|| side.publish(queue)).await;
    *waited |= suspended;
    queued
}

/// A whole message for the hub, framed: text or binary only.
pub fn hub_message(data: Vec<u8>, op: Opcode, max: usize) -> Result<Bytes, Error> {
    if data.len() > max {
        return Err(Error::TooLarge);
    }
    let kind = match op {
        Opcode::Text => {
            upgraded::check_text(&data)?;
            Kind::Text
        }
        Opcode::Binary => Kind::Binary,
        _ => return Err(Error::Protocol("hub messages are text or binary".into())),
    };
    Ok(frame::encode(kind, true, &data))
}

impl types::Host for Conn {}

impl connection::Host for Conn {
    async fn id(&mut self) -> ConnectionId {
        self.id
    }

    async fn upgrade(&mut self) -> Result<(), Error> {
        let done = sandbox::suspends(|| self.do_upgrade(None, Vec::new())).await;
        self.waited_if(done)
    }

    async fn recv(&mut self, timeout_ms: Option<u32>) -> Result<Option<Frame>, Error> {
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let (received, suspended) = sandbox::suspends(|| self.do_recv(timeout)).await;
        // A frame, or a real wait: not a poll that found nothing, nor
        // "closed" said again at once.
        self.waited |= suspended || matches!(received, Ok(Some(_)));
        received
    }

    async fn push(&mut self, data: Vec<u8>, op: Opcode, fin: bool) -> Result<(), Error> {
        let done = sandbox::suspends(|| self.do_push(data, op, fin)).await;
        self.waited_if(done)
    }

    async fn push_close(&mut self, code: u16, reason: String) -> Result<(), Error> {
        let done = sandbox::suspends(|| self.do_push_close(code, reason)).await;
        self.waited_if(done)
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
        let done = sandbox::suspends(|| self.do_respond(status, headers, body)).await;
        self.waited_if(done)
    }
}

impl handshake::Host for Conn {
    async fn upgrade_with(
        &mut self,
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<(), Error> {
        let done = sandbox::suspends(|| self.do_upgrade(protocol, headers)).await;
        self.waited_if(done)
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
        let max = self.limits.max_message_size;
        hub_send(&self.hub, &self.topics, target, (data, op), max)
    }

    async fn broadcast(&mut self, data: Vec<u8>, op: Opcode) -> Result<u32, Error> {
        let frame = hub_message(data, op, self.limits.max_message_size)?;
        let hub = &self.hub;
        Ok(fan_out(self.side.as_deref(), &mut self.waited, |cork| {
            hub.broadcast(&frame, cork)
        })
        .await)
    }
}

impl event_types::Host for Conn {}

/// A handler subscribes only its own connection, once upgraded.
impl topics::Host for Conn {
    async fn subscribe(&mut self, conn: ConnectionId, topic: String) -> Result<bool, Error> {
        crate::world::recover::subscribe(self, conn, &topic).await
    }

    async fn unsubscribe(&mut self, conn: ConnectionId, topic: String) -> Result<bool, Error> {
        Ok(self.own_subscriptions(conn)?.unsubscribe(&topic))
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Message,
        exclude: Option<ConnectionId>,
    ) -> Result<u32, Error> {
        let (topics, max) = (&self.topics, self.limits.max_message_size);
        fan_out(self.side.as_deref(), &mut self.waited, |cork| {
            topics.publish_message(&topic, &msg, exclude, max, cork)
        })
        .await
    }

    async fn subscribers(&mut self, topic: String) -> u32 {
        self.topics.subscribers(&topic)
    }
}

/// A handler recovers only its own connection, once upgraded.
impl recover::Subscribing for Conn {
    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn with_subscriptions<R>(
        &mut self,
        conn: ConnectionId,
        f: impl FnOnce(&mut Subscriptions) -> R,
    ) -> Result<R, Error> {
        Ok(f(self.own_subscriptions(conn)?))
    }
}
recover::imports_for!(Conn);
crate::world::presence::imports_for!(Conn);

impl Conn {
    fn own_subscriptions(&mut self, conn: ConnectionId) -> Result<&mut Subscriptions, Error> {
        if conn != self.id {
            return Err(Error::UnknownConnection);
        }
        Ok(&mut self.upgraded()?.subscriptions)
    }
}

impl messages::HostMessage for Conn {
    async fn opcode(&mut self, msg: Resource<HeldMessage>) -> Opcode {
        match self.held.get(&msg) {
            Ok(m) if m.text => Opcode::Text,
            _ => Opcode::Binary,
        }
    }

    async fn len(&mut self, msg: Resource<HeldMessage>) -> u64 {
        self.held.get(&msg).map_or(0, |m| m.data.len() as u64)
    }

    async fn read(&mut self, msg: Resource<HeldMessage>, offset: u64, len: u32) -> Vec<u8> {
        self.held
            .get(&msg)
            .map_or_else(|_| Vec::new(), |m| m.read(offset, len))
    }

    async fn drop(&mut self, msg: Resource<HeldMessage>) -> wasmtime::Result<()> {
        self.held.release(msg)
    }
}

/// `messages`: what the guest receives stays with the host
/// ([`crate::world::held`]).
impl messages::Host for Conn {
    async fn recv(&mut self, timeout_ms: Option<u32>) -> Result<Option<Incoming>, Error> {
        if let Some(refused) = self.held.refusal(self.limits.max_message_size) {
            return Err(refused);
        }
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms.into()));
        let (received, suspended) = sandbox::suspends(|| self.recv_delivery(timeout)).await;
        self.waited |= suspended || matches!(received, Ok(Some(_)));
        received?.map(|d| self.held.take(d)).transpose()
    }

    async fn push(&mut self, msg: Resource<HeldMessage>) -> Result<(), Error> {
        let m = self.held.get(&msg)?;
        let (data, text) = (m.data.clone(), m.text);
        let done = sandbox::suspends(|| self.push_held(data, text)).await;
        self.waited_if(done)
    }

    async fn send_to(
        &mut self,
        target: ConnectionId,
        msg: Resource<HeldMessage>,
    ) -> Result<(), Error> {
        let frame = self.held.get(&msg)?.framed();
        hub_send_framed(&self.hub, &self.topics, target, frame)
    }

    async fn broadcast(&mut self, msg: Resource<HeldMessage>) -> Result<u32, Error> {
        let frame = self.held.get(&msg)?.framed();
        let hub = &self.hub;
        Ok(fan_out(self.side.as_deref(), &mut self.waited, |cork| {
            hub.broadcast(&frame, cork)
        })
        .await)
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Resource<HeldMessage>,
        exclude: Option<ConnectionId>,
    ) -> Result<u32, Error> {
        crate::pubsub::topics::check_name(&topic)?;
        let held = self.held.get(&msg)?;
        let message = (held.text, &held.data[..]);
        let topics = &self.topics;
        let publish =
            |cork: &mut Cork| topics.publish_held(&topic, message, || held.framed(), exclude, cork);
        Ok(fan_out(self.side.as_deref(), &mut self.waited, publish).await)
    }
}
