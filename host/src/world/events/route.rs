//! An event-world route: one instance serves every socket of the route.
//!
//! The instance lives in one task that takes the route's events from a
//! queue and calls the guest once per event, one at a time; each socket's
//! events arrive in order because its own task queues them. The sockets
//! themselves (their outboxes, subscriptions and attachments) are host
//! state ([`EventHost`]), so when an event traps or runs past its CPU budget
//! only the instance is lost: a fresh one is made for the next event and
//! serves the same open sockets. The socket whose event failed is closed
//! with 1011 (its `on-close` runs on the fresh instance); a request whose
//! `on-request` failed gets 500.

use crate::bindings::events::{Events, EventsPre};
use crate::bindings::{ConnectionId, Decision, Message, Request};
use crate::meters::RouteMeters;
use crate::pubsub::topics::Topics;
use crate::wasm::sandbox;
use crate::wasm::self_wake::{self, Handled};
use crate::world::events::state::{EventHost, EventState};
use crate::world::limits::LimitsExt;
use crate::ws::outbox::{Ending, Outbox, WAKE_SLICE};
use crate::ws::socket::{MAX_CLOSE_REASON, truncate};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::Instrument;
use wasmtime::{Engine, Store};
use wshost_config::Limits;

/// Events waiting for a route's instance, across all its sockets. A socket
/// that finds the queue full waits before reading more from its peer.
const QUEUE: usize = 4096;

/// Bytes of messages waiting for a route's instance (at least one whole
/// message of `--max-message-size`): without it 4,096 queued messages of
/// 16 MiB would be 64 GiB. A socket waits for room before queuing.
const QUEUE_BYTES: usize = 64 << 20;

/// Most events served before the writers they sent to are woken: bounds
/// the latency a batch adds to its first send.
const BATCH: usize = 64;

/// What a socket's task asks of its route's instance.
pub enum Event {
    Request {
        id: ConnectionId,
        req: Request,
        reply: oneshot::Sender<Result<Decision, String>>,
    },
    Open {
        id: ConnectionId,
        outbox: Arc<Outbox>,
        attachment: Option<Vec<u8>>,
    },
    Message {
        id: ConnectionId,
        msg: Message,
        /// The message's bytes of the queue's budget, given back once handled.
        _room: OwnedSemaphorePermit,
    },
    Drain {
        id: ConnectionId,
    },
    Close {
        id: ConnectionId,
        code: u16,
        reason: String,
        done: oneshot::Sender<()>,
    },
}

/// The bytes a message takes of its route's queue budget.
fn queue_bytes(msg: &Message) -> u32 {
    u32::try_from(crate::ws::frame::payload_len(msg)).unwrap_or(u32::MAX)
}

/// A route's handle on its instance's queue.
pub struct EventRoute {
    pub path: Arc<str>,
    pub meters: RouteMeters,
    /// This route's limits and grants.
    pub limits: Arc<Limits>,
    queue: mpsc::Sender<Event>,
    /// The queue's budget of message bytes ([`QUEUE_BYTES`]).
    room: Arc<Semaphore>,
    /// The instance's task, until [`EventRoute::start`] spawns it.
    idle: Mutex<Option<Instance>>,
    /// The event loop its instance runs on, and that loop's thread.
    home: Arc<std::sync::OnceLock<(tokio::runtime::Handle, std::thread::ThreadId)>>,
}

impl EventRoute {
    pub fn new(
        path: Arc<str>,
        engine: &Engine,
        pre: EventsPre<EventState>,
        limits: Arc<Limits>,
        topics: Arc<Topics>,
    ) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        let room = QUEUE_BYTES
            .max(limits.max_message_size)
            .min(Semaphore::MAX_PERMITS);
        let room = Arc::new(Semaphore::new(room));
        let host = EventHost::new(path.clone(), limits.clone(), topics);
        let meters = RouteMeters::new(&path);
        let route_limits = limits.clone();
        let instance = Instance {
            engine: engine.clone(),
            pre,
            store: new_store(engine, &limits, host),
            events: None,
            limits,
            queue: events,
            meters: meters.clone(),
            handled: Handled::default(),
        };
        EventRoute {
            meters,
            limits: route_limits,
            path,
            queue,
            room,
            idle: Mutex::new(Some(instance)),
            home: Arc::default(),
        }
    }

    /// Spawn the instance's task (once; needs a tokio runtime).
    pub fn start(&self) {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(instance) = idle {
            let span = tracing::info_span!("events", route = %self.path);
            // With a coro route in the server, wasmtime's concurrent loop
            // wakes the task as it calls the guest: taken in place. Either
            // way, under load it yields once a wake (`self_wake`).
            let handled = instance.handled.clone();
            // Noted as it first runs: `start` may be called off the loop
            // (a reload, on a blocking thread).
            let home = self.home.clone();
            let run = async move {
                let here = (
                    tokio::runtime::Handle::current(),
                    std::thread::current().id(),
                );
                let _ = home.set(here);
                instance.run().await
            };
            tokio::spawn(self_wake::run(run, handled).instrument(span));
        }
    }

    /// The event loop the instance runs on, when it is not this thread's:
    /// a socket served there talks to the instance without waking another
    /// thread.
    pub fn home_elsewhere(&self) -> Option<(tokio::runtime::Handle, std::thread::ThreadId)> {
        let (handle, thread) = self.home.get()?;
        (*thread != std::thread::current().id()).then(|| (handle.clone(), *thread))
    }

    async fn send(&self, event: Event) {
        // The instance's task ends only once the route is dropped.
        let _ = self.queue.send(event).await;
    }

    /// The guest's decision on a request, or why it could not decide.
    pub async fn request(&self, id: ConnectionId, req: Request) -> Result<Decision, String> {
        let (reply, decision) = oneshot::channel();
        self.send(Event::Request { id, req, reply }).await;
        decision
            .await
            .unwrap_or_else(|_| Err("the route's instance has stopped".into()))
    }

    pub async fn open(&self, id: ConnectionId, outbox: Arc<Outbox>, attachment: Option<Vec<u8>>) {
        self.send(Event::Open {
            id,
            outbox,
            attachment,
        })
        .await
    }

    /// Queue a message if the queue has room for it and its bytes now;
    /// else hand it back (see [`EventRoute::message_when_room`]).
    pub fn try_message(&self, id: ConnectionId, msg: Message) -> Result<(), Message> {
        let Ok(_room) = self.room.clone().try_acquire_many_owned(queue_bytes(&msg)) else {
            return Err(msg);
        };
        match self.queue.try_reserve() {
            Ok(place) => {
                place.send(Event::Message { id, msg, _room });
                Ok(())
            }
            Err(_) => Err(msg),
        }
    }

    /// Wait until the queue has room for `msg` and its bytes, then queue
    /// it (taking it out of `msg`). Cancel-safe: the message is taken only
    /// once there is room, so a socket's task may wait here in a `select!`
    /// and still write, ping and close meanwhile.
    pub async fn message_when_room(&self, id: ConnectionId, msg: &mut Option<Message>) {
        let Some(bytes) = msg.as_ref().map(queue_bytes) else {
            return;
        };
        let room = self.room.clone().acquire_many_owned(bytes).await;
        let place = self.queue.reserve().await;
        // The message is taken either way: queued, or dropped when the
        // route's instance task is gone (else the socket would wait for
        // room that never comes, and spin).
        let msg = msg.take();
        if let (Ok(_room), Ok(place), Some(msg)) = (room, place, msg) {
            place.send(Event::Message { id, msg, _room });
        }
    }

    /// Queue `on-drain` if the queue has room now; whether it did.
    pub fn try_drain(&self, id: ConnectionId) -> bool {
        match self.queue.try_reserve() {
            Ok(place) => {
                place.send(Event::Drain { id });
                true
            }
            // Full; or closed, and then there is no one to tell.
            Err(mpsc::error::TrySendError::Full(())) => false,
            Err(mpsc::error::TrySendError::Closed(())) => true,
        }
    }

    /// Queue `on-drain` once the queue has room. Cancel-safe.
    pub async fn drain_when_room(&self, id: ConnectionId) {
        if let Ok(place) = self.queue.reserve().await {
            place.send(Event::Drain { id });
        }
    }

    /// The socket has closed; returns once the guest's `on-close` has run.
    pub async fn close(&self, id: ConnectionId, code: u16, reason: String) {
        let (done, ran) = oneshot::channel();
        let close = Event::Close {
            id,
            code,
            reason,
            done,
        };
        self.send(close).await;
        let _ = ran.await;
    }

    /// Median time to make a fresh store and instantiate the route's
    /// component, over `rounds` (what `wshost check` reports).
    pub async fn instantiate_time(&self, rounds: usize) -> anyhow::Result<std::time::Duration> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut instance = taken.ok_or_else(|| anyhow::anyhow!("route already started"))?;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let started = std::time::Instant::now();
            let host = instance.store.data_mut().host.take();
            instance.store = new_store(&instance.engine, &instance.limits, host);
            let made = instance.pre.instantiate_async(&mut instance.store).await;
            times.push(started.elapsed());
            made.map_err(anyhow::Error::from)?;
        }
        instance.store = {
            let host = instance.store.data_mut().host.take();
            new_store(&instance.engine, &instance.limits, host)
        };
        *self.idle.lock().unwrap_or_else(|e| e.into_inner()) = Some(instance);
        times.sort_unstable();
        Ok(times[times.len() / 2])
    }
}

/// The route's one instance and the queue it serves.
struct Instance {
    engine: Engine,
    pre: EventsPre<EventState>,
    limits: Arc<Limits>,
    store: Store<EventState>,
    /// The instantiated exports; `None` until the first event and after a failure.
    events: Option<Events>,
    queue: mpsc::Receiver<Event>,
    meters: RouteMeters,
    /// Events handled since the task was last woken (`self_wake`).
    handled: Handled,
}

/// A fresh, sandboxed store holding `host`.
fn new_store(engine: &Engine, limits: &Limits, host: EventHost) -> Store<EventState> {
    let mut store = Store::new(
        engine,
        EventState::new(host, limits.limiter(), &limits.grants),
    );
    sandbox::sandbox(&mut store);
    store
}

impl Instance {
    /// Serve events in batches: what is queued when a batch starts (up to
    /// [`BATCH`]) runs before the writers of its large fan-outs (publishes
    /// to [`crate::ws::outbox::CORK_AT`] sockets or more) are woken, so each
    /// of them takes the batch's frames in one write; a small fan-out's are
    /// woken as soon as its event is handled. A very large fan-out's writers
    /// are woken over a few turns of the loop
    /// ([`crate::ws::outbox::Cork::uncork_in_slices`]): the next batch is
    /// handled meanwhile, and the writers not yet woken take its frames in
    /// the same write. The batch after that waits until they all are (the
    /// batches are a [`crate::ws::outbox::Fanout`]'s turns).
    async fn run(mut self) {
        while let Some(event) = self.queue.recv().await {
            self.handle(event).await;
            self.store.data_mut().host.fanout.cork().uncork_small();
            for _ in 1..BATCH {
                match self.queue.try_recv() {
                    Ok(event) => self.handle(event).await,
                    Err(_) => break,
                }
                self.store.data_mut().host.fanout.cork().uncork_small();
            }
            self.store
                .data_mut()
                .host
                .fanout
                .end_batch(WAKE_SLICE)
                .await;
        }
    }

    async fn handle(&mut self, event: Event) {
        self.handled.one();
        match event {
            Event::Request { id, req, reply } => {
                let decided = self.call(id, |events, store| {
                    Box::pin(async move { events.call_on_request(store, id, &req).await })
                });
                let _ = reply.send(decided.await);
            }
            Event::Open {
                id,
                outbox,
                attachment,
            } => {
                self.store.data_mut().host.opened(id, outbox, attachment);
                self.socket_event(id, |events, store| {
                    Box::pin(async move { events.call_on_open(store, id).await })
                })
                .await;
            }
            Event::Message { id, msg, _room } => {
                self.socket_event(id, |events, store| {
                    Box::pin(async move { events.call_on_message(store, id, &msg).await })
                })
                .await;
            }
            Event::Drain { id } => {
                self.socket_event(id, |events, store| {
                    Box::pin(async move { events.call_on_drain(store, id).await })
                })
                .await;
            }
            Event::Close {
                id,
                code,
                reason,
                done,
            } => {
                self.store.data_mut().host.closed(id);
                let closed = self.call(id, |events, store| {
                    Box::pin(async move { events.call_on_close(store, id, code, &reason).await })
                });
                let _ = closed.await;
                self.store.data_mut().host.forget(id);
                let _ = done.send(());
                tracing::debug!("connection {id} ended");
            }
        }
    }

    /// Deliver an event of socket `id`; if the guest fails on it, close
    /// that socket with 1011.
    async fn socket_event(&mut self, id: ConnectionId, call: impl CallGuest<()>) {
        if let Err(why) = self.call(id, call).await {
            let reason = truncate(&why, MAX_CLOSE_REASON).to_string();
            let ending = Ending::Close { code: 1011, reason };
            self.store.data_mut().host.end(id, ending);
        }
    }

    /// Call the guest with a fresh CPU budget, instantiating it first if
    /// needed. On failure the instance is dropped (the sockets are kept for
    /// the next one) and the short reason returned.
    async fn call<R>(&mut self, id: ConnectionId, call: impl CallGuest<R>) -> Result<R, String> {
        let state = self.store.data_mut();
        state.limiter.restart();
        state.event_for(id);
        // The epoch moved on while the instance waited for this event: a
        // deadline from before would preempt the event at its first step.
        self.store.set_epoch_deadline(1);
        if self.events.is_none() {
            let started = std::time::Instant::now();
            let made = self.pre.instantiate_async(&mut self.store).await;
            self.meters.instantiate.record(started.elapsed());
            match made {
                Ok(events) => self.events = Some(events),
                Err(e) => {
                    tracing::error!("cannot instantiate the route's component: {e:?}");
                    self.discard();
                    return Err("handler could not start".into());
                }
            }
        }
        let events = self.events.as_ref().expect("instantiated above");
        let started = std::time::Instant::now();
        let called = sandbox::guarded(|| call(events, &mut self.store)).await;
        self.meters.event.record(started.elapsed());
        match called {
            Ok(value) => Ok(value),
            Err(err) => {
                let why = sandbox::failure(&err);
                self.discard();
                Err(why)
            }
        }
    }

    /// Drop the instance after a failure; a fresh store keeps the sockets.
    fn discard(&mut self) {
        let host = self.store.data_mut().host.take();
        self.store = new_store(&self.engine, &self.limits, host);
        self.events = None;
    }
}

/// One call into the guest's exports.
trait CallGuest<R>:
    for<'a> FnOnce(
    &'a Events,
    &'a mut Store<EventState>,
) -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
{
}

impl<R, F> CallGuest<R> for F where
    F: for<'a> FnOnce(
        &'a Events,
        &'a mut Store<EventState>,
    )
        -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
{
}
