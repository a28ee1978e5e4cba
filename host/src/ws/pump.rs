//! An open socket's own task, in both worlds: it reads the peer's messages
//! and hands them to the connection's [`Consumer`] (the event route, or a
//! handler's inbox), writes what the outbox holds, sends the Close frames
//! the host owes (shutdown 1001, eviction 1008, the guest's own), pings a
//! quiet peer and drops one that stays silent, and reports how the socket
//! ended. The guest's code never holds the socket: a guest that computes
//! or waits elsewhere still has its pings answered and its queue written.

use crate::bindings::{CloseInfo, ConnectionId, Error};
use crate::ws::alarms::Shutdown;
use crate::ws::outbox::Ending;
use crate::ws::reader::{Held, Read, ReadError};
use crate::ws::socket::{GOING_AWAY, Incoming, MAX_CLOSE_REASON, Socket, TOO_SLOW, truncate};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Instant;
use tokio::time::Sleep;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

/// The Close code reported when no Close frame was exchanged.
pub const ABNORMAL: u16 = 1006;
/// The Close code reported for a Close frame without one.
pub const NO_STATUS: u16 = 1005;

/// Who takes what the peer sends.
// Only ever used with concrete types inside this crate, where the futures'
// `Send` is known: no bounds to promise.
#[allow(async_fn_in_trait)]
pub trait Consumer {
    /// Whether another message may be read now (a closing socket reads
    /// anyway, and drops what it reads).
    fn has_room(&self) -> bool {
        true
    }

    /// Resolves once [`Consumer::has_room`] may have turned true (making
    /// that room, if it must). Cancel-safe.
    async fn room(&mut self) {}

    /// A whole message from the peer; `held` (its share of the in-flight
    /// budget) is to be dropped once the message is taken. It must not
    /// wait for the consumer to make room (the socket's writes, pings and
    /// Close frames would wait with it): a consumer without room keeps
    /// the message and says so through [`Consumer::has_room`].
    async fn message(&mut self, msg: Message, held: Held);

    /// The host sent the peer a Close frame of its own (shutdown, eviction).
    fn host_closed(&mut self, _code: CloseCode, _reason: &str) {}

    /// The peer's Close frame (ours has been, or is being, replied).
    fn peer_closed(&mut self, _close: Option<CloseInfo>) {}

    /// The peer broke the protocol or the socket failed.
    fn failed(&mut self, _error: &Error) {}

    /// The outbox, backed up before, has been written out.
    async fn drained(&mut self) {}
}

/// [`run`], with a panic in it (a bug of ours) confined to this socket: it
/// is logged and the socket ends as if the peer had gone ([`ABNORMAL`]),
/// so the caller's ending (the guest told, the slot and every charge given
/// back) runs as for any other end. The socket itself may be mid-write:
/// the caller drops it without another word to the peer.
///
/// Not an `async fn`, as [`run`] is not: one keeps its arguments twice
/// (rust-lang/rust#62958), the block below its captures once.
#[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
pub fn run_guarded<'a, C: Consumer>(
    socket: &'a mut Socket,
    consumer: &'a mut C,
    id: ConnectionId,
    shutdown: &'a Shutdown,
) -> impl Future<Output = (u16, String)> + 'a {
    async move {
        // Made in place: bound to a local first, the pump's future took
        // room twice in every socket's task.
        match AssertUnwindSafe(run(socket, consumer, id, shutdown))
            .catch_unwind()
            .await
        {
            Ok(ended) => ended,
            Err(panic) => {
                socket.broken = true;
                let why = crate::meters::panicked("socket", &*panic);
                tracing::error!("connection {id}: its socket's task panicked: {why}");
                (ABNORMAL, String::new())
            }
        }
    }
}

/// Debug builds only: a message that begins with the bytes of
/// `WSHOST_TEST_PANIC` panics the socket's task as a bug of ours would, so
/// the tests can prove such a panic leaks nothing.
#[cfg(debug_assertions)]
fn injected_panic(msg: &Message) {
    static WORD: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let word = WORD.get_or_init(|| std::env::var("WSHOST_TEST_PANIC").ok());
    let payload: &[u8] = match msg {
        Message::Text(text) => text.as_bytes(),
        Message::Binary(data) => data,
        _ => &[],
    };
    if let Some(word) = word.as_deref()
        && payload.starts_with(word.as_bytes())
    {
        panic!("injected by WSHOST_TEST_PANIC");
    }
}

/// Pump `socket` until it has closed; returns the Close code and reason the
/// connection ended with: ours if the host or guest closed first, the
/// peer's otherwise, [`ABNORMAL`] when no Close frame was exchanged.
///
/// Its keepalive alarm and the shutdown reach it as nudges through its
/// outbox (`ws::alarms`): no timer of its own but the Close reply's.
///
/// Not an `async fn`: every idle socket's task holds this future, and an
/// `async fn` holds its arguments twice (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
fn run<'a, C: Consumer>(
    socket: &'a mut Socket,
    consumer: &'a mut C,
    id: ConnectionId,
    shutdown: &'a Shutdown,
) -> impl Future<Output = (u16, String)> + 'a {
    async move {
        // The socket's keepalive is asked of it where it is needed, not
        // kept here (32 bytes in every socket's task).
        let keepalive_on = socket.keepalive().enabled();
        let outbox = socket.outbox.clone();
        // The Close frame we sent (or meant to); boxed, as once in a
        // socket's life.
        let mut sent: Option<Box<(u16, String)>> = None;
        // Boxed: a timer that only closing sockets need.
        let mut reply_due: Option<Pin<Box<Sleep>>> = None;
        // Keepalive: when the peer was last heard from, and whether it has been
        // pinged since. The alarm is re-armed only when it rings, not per read.
        let mut heard = Instant::now();
        let alarm = keepalive_on.then(|| socket.keepalive().next(heard, false, heard));
        // Enrolled before the shutdown flag is first read: a shutdown after
        // that read nudges this socket.
        let alarm = shutdown.alarms.enroll(&outbox, &socket.keepalive(), alarm);
        let mut pinged = false;
        // Bytes read when the peer was last heard: any byte counts as heard, so
        // a long message arriving slowly is not silence.
        let mut received = socket.bytes_received();
        // Bytes the peer sent that wait unread in the kernel when the alarm last
        // rang: growing while we do not read (a full inbox or route queue, the
        // in-flight budget), they show the peer is there; they stay put when it
        // is silent, and it is dropped as any silent peer.
        let mut unread = 0;
        // The message that took the in-flight budget's overdraft must be done
        // by then, whatever the socket is doing (boxed: rare).
        let mut overdraft_due: Option<Pin<Box<Sleep>>> = None;
        // The shutdown flag, read each turn (a socket whose reads or queue are
        // always ready never polls the select's later arms); its turning true
        // nudges the socket awake.
        let mut shut_down = false;
        loop {
            shut_down = shut_down || shutdown.is_set();
            if socket.closing {
                if outbox.is_abandoned() || socket.broken {
                    return abnormal(sent);
                }
            } else {
                let host_close = if outbox.is_evicted() {
                    Some((CloseCode::Policy, TOO_SLOW))
                } else if shut_down {
                    Some((CloseCode::Away, GOING_AWAY))
                } else {
                    None
                };
                // A value kept across more than one `await` is laid out
                // apart from the rest in every socket's task: the rare
                // closes below await once each (boxed), and what the
                // common path awaits holds none of them.
                let mut write = false;
                if let Some((code, reason)) = host_close {
                    sent = Some(Box::new((code.into(), reason.to_string())));
                    consumer.host_closed(code, reason);
                    // Boxed, with its timer: once in a socket's life.
                    Box::pin(async {
                        // What was queued first: the guest may have a last word.
                        if code == CloseCode::Away {
                            let _ = socket.write_queued().await;
                        }
                        socket.host_close(code, reason).await
                    })
                    .await;
                } else {
                    match outbox.ending() {
                        Some(Ending::Terminate) => return abnormal(sent),
                        Some(Ending::Close { code, reason }) => {
                            // Boxed: once in a socket's life.
                            Box::pin(async {
                                // What was queued before the close goes out first.
                                let _ = socket.write_queued().await;
                                let _ = socket.send_close(code, &reason).await;
                            })
                            .await;
                            outbox.close_was_written();
                            sent = Some(Box::new((code, reason)));
                        }
                        None => write = true,
                    }
                }
                if write {
                    if socket.write_queued().await.is_err() && socket.broken {
                        // A write stuck on a peer that does not read was
                        // given up: evicted (1008), terminated, or past the
                        // write timeout.
                        if outbox.is_evicted() {
                            sent = Some(Box::new((CloseCode::Policy.into(), TOO_SLOW.into())));
                        }
                        return abnormal(sent);
                    }
                    if outbox.take_drain() {
                        consumer.drained().await;
                    }
                }
                if socket.closing && reply_due.is_none() {
                    let deadline = tokio::time::Instant::now() + socket.close_timeout();
                    reply_due = Some(Box::pin(tokio::time::sleep_until(deadline)));
                }
                if socket.broken {
                    return abnormal(sent);
                }
            }
            // A closing socket reads on whatever its consumer holds: the
            // messages are dropped (they cross our Close) and the peer's
            // Close reply is what it waits for. It still waits for room
            // too: what it read before its Close may be waiting for it.
            let closing = socket.closing;
            let has_room = consumer.has_room();
            let may_read = closing || has_room;
            match socket.overdraft_due() {
                Some(due) if overdraft_due.is_none() => {
                    overdraft_due = Some(Box::pin(tokio::time::sleep_until(due)));
                }
                None => overdraft_due = None,
                Some(_) => {}
            }
            // What woke the socket is handled once the select's futures are
            // gone: awaited inside its arms, a reply's write would be stored
            // beside them in every socket's task (~0.5 KiB each).
            let woke = tokio::select! {
                biased;
                // First: a peer whose ready frames would win every turn must
                // not outlast the overdraft's deadline.
                _ = overdue(&mut overdraft_due) => {
                    overdraft_due = None;
                    Woke::Read(Err(ReadError::Overdue(crate::ws::budget::OVERDRAFT_DEADLINE)))
                }
                read = socket.next_read(), if may_read => Woke::Read(read),
                // Frames, an ending, an eviction, or a nudge (the alarm or the
                // shutdown).
                _ = outbox.wanted(closing) => match outbox.take_nudge() {
                    true if keepalive_on => Woke::Alarm,
                    _ => Woke::Queue,
                },
                () = consumer.room(), if !has_room => {
                    // Not listening is not the peer's silence.
                    heard = Instant::now();
                    Woke::Queue
                }
                _ = overdue(&mut reply_due) => return abnormal(sent),
            };
            match woke {
                Woke::Queue => {}
                Woke::Read(read) => {
                    heard = Instant::now();
                    pinged = false;
                    received = socket.bytes_received();
                    match socket.incoming(read).await {
                        None => {}
                        // Messages that cross our Close frame are dropped.
                        Some(Incoming::Message(msg, held)) if sent.is_none() => {
                            #[cfg(debug_assertions)]
                            injected_panic(&msg);
                            consumer.message(msg, held).await
                        }
                        Some(Incoming::Message(..)) => {}
                        Some(Incoming::Close(close)) => {
                            consumer.peer_closed(close.clone());
                            let theirs =
                                close.map_or((NO_STATUS, String::new()), |c| (c.code, c.reason));
                            return sent.map_or(theirs, |sent| *sent);
                        }
                        Some(Incoming::Gone) => return abnormal(sent),
                        Some(Incoming::Failed { error, code }) => {
                            tracing::debug!("connection {id} failed: {error}");
                            consumer.failed(&error);
                            let reason = truncate(&error.to_string(), MAX_CLOSE_REASON).to_string();
                            return sent.map_or((code, reason), |sent| *sent);
                        }
                    }
                }
                Woke::Alarm => {
                    let now = Instant::now();
                    // Any byte is hearing from the peer, read or still waiting
                    // in the kernel while we do not read.
                    let unread_now = socket.unread();
                    if socket.bytes_received() != received || unread_now > unread {
                        received = socket.bytes_received();
                        heard = now;
                        pinged = false;
                    }
                    unread = unread_now;
                    if socket.keepalive().silent_too_long(heard, now) {
                        tracing::debug!(
                            "connection {id}: nothing heard for {:?}; dropped",
                            now - heard
                        );
                        return abnormal(sent);
                    }
                    if socket.keepalive().ping_due(heard, pinged, now) && !socket.closing {
                        pinged = true;
                        let _ = socket.ping().await;
                    }
                    // A closing socket is not pinged (its Close reply's timer
                    // bounds it): re-armed, a ping due and never sent would
                    // ring every tick until then.
                    if !socket.closing {
                        alarm.rearm(socket.keepalive().next(heard, pinged, now));
                    }
                }
            }
        }
    }
}

/// What woke a socket's task.
enum Woke {
    Read(Result<Read, ReadError>),
    /// The outbox, the shutdown flag or the consumer's room: checked each turn.
    Queue,
    /// A nudge, with keepalive on: the alarm rang (or the server is
    /// shutting down, and the peer's silence is looked at early: harmless).
    Alarm,
}

/// Resolves when the peer's Close reply is overdue; never before we close.
async fn overdue(reply_due: &mut Option<Pin<Box<Sleep>>>) {
    match reply_due {
        Some(timer) => timer.await,
        None => std::future::pending().await,
    }
}

/// The code reported when the closing handshake did not complete: ours if
/// we sent one, else 1006.
fn abnormal(sent: Option<Box<(u16, String)>>) -> (u16, String) {
    sent.map_or((ABNORMAL, String::new()), |sent| *sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meters::RouteMeters;
    use crate::net::transport::Stream;
    use crate::ws::outbox::Outbox;
    use std::sync::Arc;
    use wshost_config::Limits;

    struct Sink;

    impl Consumer for Sink {
        async fn message(&mut self, _msg: Message, _held: Held) {}
    }

    /// Every open socket's task holds the pump's future for the socket's
    /// life: a change that grows it grows every idle socket (release: 3,080
    /// bytes with the socket and the event consumer before `738d98f`, ~1,900
    /// after; the event socket's task cell 1,024 bytes after `b875c96`:
    /// docs/src/benchmarks/profile.md). The bound is this future's
    /// size (here with a consumer that keeps nothing) when it was set, with
    /// a little room.
    #[tokio::test]
    async fn the_pumps_future_stays_small() {
        let (server, _client) = crate::net::transport::tcp_pair(None).await;
        let limits = Arc::new(Limits::default());
        let outbox = Arc::new(Outbox::new(1, 16, 1 << 20));
        let meters = RouteMeters::new("/size");
        let none: &[u8] = b"";
        let opened = Socket::open(
            Stream::Plain(server),
            (none, Vec::new()),
            None,
            &limits,
            (outbox, meters),
        );
        let mut socket = opened.await.unwrap();
        let shutdown = Shutdown::never();
        let mut sink = Sink;
        let pump = run_guarded(&mut socket, &mut sink, 1, &shutdown);
        let size = std::mem::size_of_val(&pump);
        // 544 bytes in a debug build when this was written (1,208 before the
        // keepalive timer and the shutdown's wait moved to `ws::alarms`, 920
        // before the pump's awaits stopped keeping their arguments twice
        // and their rare values across more awaits than one).
        // Re-measure with this test's `eprintln!` (`-- --nocapture`).
        let bound = 640;
        eprintln!("the pump's future: {size} bytes");
        assert!(
            size <= bound,
            "the pump's future grew to {size} bytes (bound {bound})"
        );
    }
}
