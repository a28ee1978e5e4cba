//! What an event-world instance's `Store` holds, and the imports it calls:
//! the route's open sockets (their outboxes, subscriptions and
//! attachments), kept by the host so that they outlive the instance.
//!
//! Every import here is non-blocking: a send queues a framed message to the
//! socket's outbox and returns; the socket's own task writes it.

use crate::bindings::events::sockets;
use crate::bindings::wshost::websocket::{event_types, topics, types};
use crate::bindings::{ConnectionId, Error, Message, SendStatus};
use crate::pubsub::topics::{Subscriptions, Topics};
use crate::wasm::guest_log::{GuestLog, Stream};
use crate::wasm::sandbox::{self, GuestLimiter, Sandboxed};
use crate::world::recover;
use crate::ws::frame;
use crate::ws::outbox::{Ending, Fanout, Outbox, Queued, Refused};
use crate::ws::socket::check_close;
use std::collections::HashMap;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wshost_config::Grants;
use wshost_config::Limits;

/// The largest attachment a socket may hold, in bytes.
pub const MAX_ATTACHMENT: usize = 16 << 10;

pub struct EventState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The guest's stdout and stderr, tagged with the current event's socket.
    logs: [GuestLog; 2],
    pub limiter: GuestLimiter,
    pub host: EventHost,
}

impl EventState {
    /// A guest gets no environment, arguments, files or sockets; its stdout
    /// and stderr go to the host's log, tagged with the route.
    pub fn new(host: EventHost, limiter: GuestLimiter, grants: &Grants) -> Self {
        let route = host.route.clone();
        let logs = [
            GuestLog::new(route.clone(), 0, Stream::Stdout),
            GuestLog::new(route, 0, Stream::Stderr),
        ];
        let wasi = sandbox::wasi(grants, logs[0].clone(), logs[1].clone());
        EventState {
            wasi,
            table: sandbox::resource_table(64),
            logs,
            limiter,
            host,
        }
    }
}

impl EventState {
    /// What the guest prints from now on is about socket `conn`.
    pub fn event_for(&mut self, conn: ConnectionId) {
        for log in &self.logs {
            log.set_conn(conn);
        }
    }
}

impl WasiView for EventState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Sandboxed for EventState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }
}

/// The sockets of one event route, as its guest reaches them.
pub struct EventHost {
    route: Arc<str>,
    limits: Arc<Limits>,
    topics: Arc<Topics>,
    sockets: HashMap<ConnectionId, Entry>,
    /// The writers what the current batch of events queued for, and the
    /// rounds waking those of the batches before; the route's instance
    /// uncorks after each batch.
    pub fanout: Fanout,
}

struct Entry {
    outbox: Arc<Outbox>,
    /// `None` once the socket has closed (during its `on-close`).
    subscriptions: Option<Subscriptions>,
    /// A `Box<[u8]>`, 8 bytes smaller than a `Vec` in every socket's entry.
    attachment: Option<Box<[u8]>>,
}

impl EventHost {
    pub fn new(route: Arc<str>, limits: Arc<Limits>, topics: Arc<Topics>) -> Self {
        EventHost {
            route,
            limits,
            topics,
            sockets: HashMap::new(),
            fanout: Fanout::default(),
        }
    }

    /// Everything this holds, for the next instance of the route; this one
    /// is left empty (and what it queued, written, its writers woken at once).
    pub fn take(&mut self) -> EventHost {
        self.fanout.cork().uncork();
        EventHost {
            sockets: std::mem::take(&mut self.sockets),
            fanout: std::mem::take(&mut self.fanout),
            ..EventHost::new(self.route.clone(), self.limits.clone(), self.topics.clone())
        }
    }

    /// Socket `id` has opened: the guest may use it from now on.
    pub fn opened(&mut self, id: ConnectionId, outbox: Arc<Outbox>, attachment: Option<Vec<u8>>) {
        let subscriptions = Subscriptions::new(self.topics.clone(), id, outbox.clone());
        let entry = Entry {
            outbox,
            subscriptions: Some(subscriptions),
            attachment: attachment.map(Vec::into_boxed_slice),
        };
        self.sockets.insert(id, entry);
    }

    /// Socket `id` has closed: its subscriptions end now; its attachment
    /// stays readable until [`EventHost::forget`], after `on-close`.
    pub fn closed(&mut self, id: ConnectionId) {
        if let Some(entry) = self.sockets.get_mut(&id) {
            entry.subscriptions = None;
        }
    }

    pub fn forget(&mut self, id: ConnectionId) {
        self.sockets.remove(&id);
    }

    /// Ask socket `id`'s task to end it (after its event failed).
    pub fn end(&self, id: ConnectionId, ending: Ending) {
        if let Some(entry) = self.sockets.get(&id) {
            entry.outbox.end(ending);
        }
    }

    fn subscriptions(&mut self, id: ConnectionId) -> Result<&mut Subscriptions, Error> {
        let entry = open(&mut self.sockets, id)?;
        Ok(entry
            .subscriptions
            .as_mut()
            .expect("open sockets have subscriptions"))
    }
}

/// The open socket `id`: `unknown-connection` if there is none on this
/// route, `peer-closed` if it has closed.
fn open(sockets: &mut HashMap<ConnectionId, Entry>, id: ConnectionId) -> Result<&mut Entry, Error> {
    match sockets.get_mut(&id) {
        None => Err(Error::UnknownConnection),
        Some(entry) if entry.subscriptions.is_none() => Err(Error::PeerClosed),
        Some(entry) => Ok(entry),
    }
}

impl types::Host for EventHost {}
impl event_types::Host for EventHost {}

impl sockets::Host for EventHost {
    async fn send(&mut self, conn: ConnectionId, msg: Message) -> Result<SendStatus, Error> {
        let frame = frame::message(&msg, self.limits.max_message_size)?;
        if !self.sockets.contains_key(&conn) && self.topics.send_remote(conn, &frame) {
            // Another process's socket (`--cluster`): fire and forget.
            return Ok(SendStatus::Queued);
        }
        let entry = open(&mut self.sockets, conn)?;
        match entry.outbox.offer_corked(frame, self.fanout.cork()) {
            Ok(Queued::Below) => Ok(SendStatus::Queued),
            Ok(Queued::BackedUp) => Ok(SendStatus::BackedUp),
            Err(Refused::Overflowed) => Err(Error::QueueFull),
            Err(Refused::Closed) => Err(Error::PeerClosed),
        }
    }

    async fn close(&mut self, conn: ConnectionId, code: u16, reason: String) -> Result<(), Error> {
        check_close(code, &reason)?;
        open(&mut self.sockets, conn)?
            .outbox
            .end(Ending::Close { code, reason });
        Ok(())
    }

    async fn terminate(&mut self, conn: ConnectionId) {
        self.end(conn, Ending::Terminate);
    }

    async fn buffered_amount(&mut self, conn: ConnectionId) -> u64 {
        self.sockets
            .get(&conn)
            .map_or(0, |entry| entry.outbox.buffered() as u64)
    }

    async fn set_attachment(&mut self, conn: ConnectionId, data: Vec<u8>) -> Result<(), Error> {
        if data.len() > MAX_ATTACHMENT {
            return Err(Error::TooLarge);
        }
        let entry = self
            .sockets
            .get_mut(&conn)
            .ok_or(Error::UnknownConnection)?;
        entry.attachment = Some(data.into_boxed_slice());
        Ok(())
    }

    async fn attachment(&mut self, conn: ConnectionId) -> Option<Vec<u8>> {
        self.sockets
            .get(&conn)?
            .attachment
            .as_deref()
            .map(<[u8]>::to_vec)
    }

    async fn open_sockets(&mut self) -> Vec<ConnectionId> {
        let mut ids: Vec<_> = self
            .sockets
            .iter()
            .filter(|(_, entry)| entry.subscriptions.is_some())
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

impl topics::Host for EventHost {
    async fn subscribe(&mut self, conn: ConnectionId, topic: String) -> Result<bool, Error> {
        recover::subscribe(self, conn, &topic).await
    }

    async fn unsubscribe(&mut self, conn: ConnectionId, topic: String) -> Result<bool, Error> {
        Ok(self.subscriptions(conn)?.unsubscribe(&topic))
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Message,
        exclude: Option<ConnectionId>,
    ) -> Result<u32, Error> {
        let max = self.limits.max_message_size;
        let cork = self.fanout.cork();
        self.topics
            .publish_message(&topic, &msg, exclude, max, cork)
    }

    async fn subscribers(&mut self, topic: String) -> u32 {
        self.topics.subscribers(&topic)
    }
}

/// Topic history for the route's sockets (any of them, by id).
impl recover::Subscribing for EventHost {
    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn with_subscriptions<R>(
        &mut self,
        conn: ConnectionId,
        f: impl FnOnce(&mut Subscriptions) -> R,
    ) -> Result<R, Error> {
        Ok(f(self.subscriptions(conn)?))
    }
}
recover::imports_for!(EventHost);
crate::world::presence::imports_for!(EventHost);
