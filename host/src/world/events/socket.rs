//! One connection of an event-world route: the guest decides on the request,
//! then the socket's own task ([`crate::ws::pump`]) turns the peer's messages
//! into events and writes what the outbox holds (the guest's sends, topic
//! messages) until the socket closes, and reports that exactly once.

use crate::bindings::{ConnectionId, Decision, Message, Request, UpgradeOptions};
use crate::meters::Open;
use crate::net::http::{self, RequestHead};
use crate::net::transport::Stream;
use crate::world::events::route::EventRoute;
use crate::world::events::state::MAX_ATTACHMENT;
use crate::world::limits::LimitsExt;
use crate::ws::alarms::Shutdown;
use crate::ws::pump::{self, ABNORMAL, Consumer};
use crate::ws::reader::Held;
use crate::ws::socket::Socket;
use std::sync::Arc;
use wshost_config::Limits;

/// What the connection task brings to an event route.
pub struct Accepted {
    pub id: ConnectionId,
    pub stream: Stream,
    pub head: RequestHead,
    pub early: Vec<u8>,
    pub request: Request,
}

/// Serve one request of `route`: ask the guest, answer it or open the
/// socket. An open socket is handed to a task of its own, which pumps it
/// until it closes and holds `slot` (its `--max-connections` permit) as long:
/// a task holds its future's largest state for its whole life, so the
/// socket's should be no larger than what it idles in.
pub async fn serve(
    route: Arc<EventRoute>,
    limits: Arc<Limits>,
    incoming: Accepted,
    shutdown: Shutdown,
    slot: Open,
) {
    let id = incoming.id;
    match open(&route, &limits, incoming).await {
        None => {}
        Some(Ok(socket)) => {
            // Without the connection's span: entered on every poll, it cost
            // 0.5-1.5% of the server's CPU at 1,000 connections; what the
            // pump logs names the connection itself.
            let pump = serve_socket(socket, route, id, shutdown, slot);
            tokio::spawn(pump);
        }
        Some(Err(e)) => {
            tracing::debug!("the 101 could not be sent: {e}");
            route.close(id, ABNORMAL, String::new()).await;
        }
    }
}

/// Ask the guest, then answer the request or open the socket (`on-open`
/// is queued first); `None` when there is no socket (answered over HTTP).
async fn open(
    route: &EventRoute,
    limits: &Arc<Limits>,
    incoming: Accepted,
) -> Option<std::io::Result<Socket>> {
    let Accepted {
        id,
        mut stream,
        head,
        early,
        request,
    } = incoming;
    let decision = route.request(id, request).await;
    let options = match decision {
        Ok(Decision::Upgrade(options)) => options,
        Ok(Decision::Respond(response)) => {
            let bytes = match http::check_response(response.status, &response.headers) {
                Ok(()) => http::response(
                    response.status,
                    &response.headers,
                    &response.body,
                    head.method == "HEAD",
                ),
                Err(why) => failed(&format!("its response was refused: {why}")),
            };
            http::refuse(&mut stream, &bytes, limits.write_timeout).await;
            return None;
        }
        Err(why) => {
            http::refuse(&mut stream, &failed(&why), limits.write_timeout).await;
            return None;
        }
    };
    let accept = match http::accept_key(&head) {
        Ok(accept) => accept,
        Err(refusal) => {
            tracing::debug!("not a WebSocket handshake: {refusal}");
            crate::meters::refused("bad_handshake");
            http::refuse(&mut stream, &refusal.response(), limits.write_timeout).await;
            return None;
        }
    };
    let UpgradeOptions {
        protocol,
        headers,
        attachment,
    } = options;
    let checked =
        http::check_upgrade(&head, protocol.as_deref(), &headers).and_then(
            |()| match &attachment {
                Some(a) if a.len() > MAX_ATTACHMENT => {
                    Err(format!("its attachment is {} bytes", a.len()))
                }
                _ => Ok(()),
            },
        );
    if let Err(why) = checked {
        tracing::warn!("upgrade refused: {why}");
        let refused = failed(&format!("its upgrade was refused: {why}"));
        http::refuse(&mut stream, &refused, limits.write_timeout).await;
        return None;
    }
    let outbox = Arc::new(limits.outbox(id));
    let (response, agreed) = http::switching_protocols(
        (&head, &accept),
        protocol.as_deref(),
        &headers,
        limits.deflate,
    );
    // Opened before the 101 goes out: once the client sees it, a message it
    // (or anyone) sends is queued after this socket's `on-open`, so what
    // `on-open` subscribes to already reaches it.
    route.open(id, outbox.clone(), attachment).await;
    let meters = route.meters.clone();
    Some(Socket::open(stream, (&response, early), agreed, limits, (outbox, meters)).await)
}

/// A 500 naming why the handler could not answer.
fn failed(why: &str) -> Vec<u8> {
    let body = format!("the handler failed: {why}\n");
    http::response(500, &[], body.as_bytes(), false)
}

/// Pump the socket until it has closed, then report the close to the guest
/// (`on-close` runs before the socket's permit is given back).
///
/// Not an `async fn`: one keeps its arguments and the locals they are
/// moved into side by side (rust-lang/rust#62958), and this future is the
/// whole of an idle socket's task (1,648 bytes in a release build when it
/// was an `async fn`, ~300 of them the arguments' second copy). The block
/// below uses its captures in place.
#[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
fn serve_socket(
    mut socket: Socket,
    route: Arc<EventRoute>,
    id: ConnectionId,
    shutdown: Shutdown,
    slot: Open,
) -> impl Future<Output = ()> + Send {
    async move {
        // Should this task go without reporting the close (dropped at
        // shutdown, or a panic outside the guarded pump), the guard reports it.
        let mut report = CloseReport {
            route: Some(route.clone()),
            id,
        };
        // By reference: moved, the socket would take room twice in this task.
        let mut events = Events {
            route: &route,
            id,
            waiting: None,
            drain_owed: false,
        };
        let (code, reason) = pump::run_guarded(&mut socket, &mut events, id, &shutdown).await;
        // Nothing more is queued for it (the guest's `send` until `on-close`
        // runs, a topic's publishes), as in the handler world.
        socket.outbox.finish();
        // Dropped (TCP closed) before the guest hears of it.
        drop(socket);
        report.route = None;
        // Boxed: once in a socket's life, and larger than the pump's
        // future it follows (it would set the size of every idle socket's task).
        Box::pin(route.close(id, code, reason)).await;
        drop(slot);
    }
}

/// Reports a socket's close to its route if the socket's task ends without
/// doing so: the route's host state (outbox, subscriptions, attachment) is
/// released and the guest's `on-close` runs, from a task of its own.
struct CloseReport {
    route: Option<Arc<EventRoute>>,
    id: ConnectionId,
}

impl Drop for CloseReport {
    fn drop(&mut self) {
        let (Some(route), Ok(runtime)) = (self.route.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let id = self.id;
        runtime.spawn(async move { route.close(id, ABNORMAL, String::new()).await });
    }
}

/// The event route takes the socket's messages, as `on-message` events.
struct Events<'a> {
    route: &'a EventRoute,
    id: ConnectionId,
    /// A message the route's queue had no room for: the socket reads no
    /// more until it is queued (unless it has sent its Close: then it reads
    /// for the reply and drops what else comes), and meanwhile writes,
    /// pings and closes as ever (the review's M9: it waited inside its
    /// read, deaf to all).
    /// Boxed: rare, and 72 bytes more in every socket's task in line.
    waiting: Option<Box<Waiting>>,
    /// `on-drain` is owed, after the waiting message (if any).
    drain_owed: bool,
}

/// A message waiting for room in the route's queue, and its share of the
/// in-flight budget, kept while it waits.
struct Waiting {
    /// Taken when it is queued (or the route is gone).
    msg: Option<Message>,
    _held: Held,
}

impl Consumer for Events<'_> {
    fn has_room(&self) -> bool {
        self.waiting.is_none() && !self.drain_owed
    }

    /// What waits goes in order: the message, then `on-drain`.
    /// Boxed: the socket's task makes this future on every turn, but waits
    /// in it only while the route's queue is full.
    async fn room(&mut self) {
        Box::pin(async {
            if let Some(waiting) = &mut self.waiting {
                self.route
                    .message_when_room(self.id, &mut waiting.msg)
                    .await;
                if waiting.msg.is_none() {
                    self.waiting = None;
                }
            }
            if self.waiting.is_none() && self.drain_owed {
                self.route.drain_when_room(self.id).await;
                self.drain_owed = false;
            }
        })
        .await
    }

    /// The route's queue has a byte bound of its own: the message's share
    /// of the in-flight budget is given back as it is queued.
    async fn message(&mut self, msg: tungstenite::Message, held: Held) {
        if let Err(msg) = self.route.try_message(self.id, to_guest(msg)) {
            let msg = Some(msg);
            self.waiting = Some(Box::new(Waiting { msg, _held: held }));
        }
    }

    /// Never waits for the queue (as `message`): owed until it has room.
    async fn drained(&mut self) {
        self.drain_owed = self.waiting.is_some() || !self.route.try_drain(self.id);
    }
}

/// A message as the guest's `on-message` takes it; without a copy when
/// it was read into a buffer of its own.
fn to_guest(msg: tungstenite::Message) -> Message {
    match msg {
        tungstenite::Message::Text(text) => {
            let bytes = Vec::from(bytes::Bytes::from(text));
            // SAFETY: the reader made `text` a `Utf8Bytes` after checking it.
            Message::Text(unsafe { String::from_utf8_unchecked(bytes) })
        }
        other => Message::Binary(other.into_data().into()),
    }
}
