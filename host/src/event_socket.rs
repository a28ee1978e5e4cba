//! One connection of an event-world route: the guest decides on the request,
//! then the socket's own task reads the peer's messages into events and
//! writes what the outbox holds (the guest's sends, topic messages) until
//! the socket closes, and reports that exactly once.

use crate::bindings::{ConnectionId, Decision, Message, Request, UpgradeOptions};
use crate::config::Limits;
use crate::event_route::EventRoute;
use crate::event_state::MAX_ATTACHMENT;
use crate::http::{self, RequestHead};
use crate::outbox::Ending;
use crate::socket::{
    GOING_AWAY, Incoming, MAX_CLOSE_REASON, Socket, TOO_SLOW, sleep_until, truncate, turned_true,
};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tracing::Instrument;
use tungstenite::protocol::frame::coding::CloseCode;

/// The Close code `on-close` gets when no Close frame was exchanged.
const ABNORMAL: u16 = 1006;
/// The Close code `on-close` gets for a Close frame without one.
const NO_STATUS: u16 = 1005;

/// What the connection task brings to an event route.
pub struct Accepted {
    pub id: ConnectionId,
    pub stream: TcpStream,
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
    shutdown: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    let id = incoming.id;
    match open(&route, &limits, incoming).await {
        None => {}
        Some(Ok(socket)) => {
            let pump = pump(socket, route, id, shutdown, slot);
            tokio::spawn(pump.instrument(tracing::Span::current()));
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
    limits: &Limits,
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
    let response = http::switching_protocols(&accept, protocol.as_deref(), &headers);
    // Opened before the 101 goes out: once the client sees it, a message it
    // (or anyone) sends is queued after this socket's `on-open`, so what
    // `on-open` subscribes to already reaches it.
    route.open(id, outbox.clone(), attachment).await;
    Some(Socket::open(stream, &response, early, limits, outbox).await)
}

/// A 500 naming why the handler could not answer.
fn failed(why: &str) -> Vec<u8> {
    let body = format!("the handler failed: {why}\n");
    http::response(500, &[], body.as_bytes(), false)
}

/// Pump the socket until it has closed, then report the close to the guest
/// (`on-close` runs before the socket's permit is given back).
async fn pump(
    mut socket: Socket,
    route: Arc<EventRoute>,
    id: ConnectionId,
    mut shutdown: watch::Receiver<bool>,
    slot: OwnedSemaphorePermit,
) {
    // By reference: moved, the socket would take room twice in this task.
    let (code, reason) = run(&mut socket, &route, id, &mut shutdown).await;
    // Dropped (TCP closed) before the guest hears of it.
    drop(socket);
    route.close(id, code, reason).await;
    drop(slot);
}

/// Pump the socket until it has closed; returns the Close code and reason
/// `on-close` gets.
async fn run(
    socket: &mut Socket,
    route: &EventRoute,
    id: ConnectionId,
    shutdown: &mut watch::Receiver<bool>,
) -> (u16, String) {
    let outbox = socket.outbox.clone();
    // The Close frame we sent (or meant to), and until when we wait for the
    // peer's reply.
    let mut sent: Option<(u16, String)> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        if socket.closing {
            if outbox.is_abandoned() || socket.broken {
                return abnormal(sent);
            }
        } else {
            let host_close = if outbox.is_evicted() {
                Some((CloseCode::Policy, TOO_SLOW))
            } else if *shutdown.borrow() {
                Some((CloseCode::Away, GOING_AWAY))
            } else {
                None
            };
            if let Some((code, reason)) = host_close {
                sent = Some((code.into(), reason.to_string()));
                socket.host_close(code, reason).await;
            } else {
                match outbox.ending() {
                    Some(Ending::Terminate) => return abnormal(sent),
                    Some(Ending::Close { code, reason }) => {
                        // What was queued before the close goes out first.
                        let _ = socket.write_queued(None).await;
                        let _ = socket.send_close(code, &reason).await;
                        sent = Some((code, reason));
                    }
                    None => {
                        if socket.write_queued(None).await.is_err() && socket.broken {
                            // A write stuck on a peer that does not read
                            // was given up: evicted (1008) or terminated.
                            if outbox.is_evicted() {
                                sent = Some((CloseCode::Policy.into(), TOO_SLOW.into()));
                            }
                            return abnormal(sent);
                        }
                        if outbox.take_drain() {
                            route.drain(id).await;
                        }
                    }
                }
            }
            if socket.closing {
                deadline = Some(Instant::now() + socket.close_timeout());
            }
            if socket.broken {
                return abnormal(sent);
            }
        }
        tokio::select! {
            biased;
            read = socket.next() => match socket.incoming(read).await {
                None => {}
                // Messages that cross our Close frame are dropped.
                Some(Incoming::Message(msg)) if sent.is_none() => {
                    route.message(id, to_guest(msg)).await;
                }
                Some(Incoming::Message(_)) => {}
                Some(Incoming::Close(close)) => {
                    let theirs = close.map_or((NO_STATUS, String::new()), |c| (c.code, c.reason));
                    return sent.unwrap_or(theirs);
                }
                Some(Incoming::Gone) => return abnormal(sent),
                Some(Incoming::Failed { error, code }) => {
                    tracing::debug!("connection {id} failed: {error}");
                    let reason = truncate(&error.to_string(), MAX_CLOSE_REASON).to_string();
                    return sent.unwrap_or((code, reason));
                }
            },
            _ = outbox.ready(), if !socket.closing => {}
            _ = outbox.abandoned(), if socket.closing => {}
            _ = turned_true(shutdown), if !socket.closing => {}
            _ = sleep_until(deadline) => return abnormal(sent),
        }
    }
}

/// The code `on-close` gets when the closing handshake did not complete:
/// ours if we sent one, else 1006.
fn abnormal(sent: Option<(u16, String)>) -> (u16, String) {
    sent.unwrap_or((ABNORMAL, String::new()))
}

/// A message as the guest's `on-message` takes it.
fn to_guest(msg: tungstenite::Message) -> Message {
    match msg {
        tungstenite::Message::Text(text) => Message::Text(text.as_str().to_owned()),
        other => Message::Binary(other.into_data().into()),
    }
}
