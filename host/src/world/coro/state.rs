//! What a coro-world instance's `Store` holds, and the imports it calls:
//! the connections its tasks serve, each the handler world's [`Conn`]
//! behind a lock of its own.
//!
//! A waiting import (`recv`, `push`, ...) takes its connection out of the
//! store's table in one short visit, then waits outside the store, so the
//! instance runs its other tasks meanwhile. A connection's calls come from
//! its own task one at a time, so its lock is not contended; the
//! non-waiting imports (`topics`) take it without waiting and say `busy`
//! should the task have a waiting call on it in flight.

use crate::bindings::coro::coro_connection;
use crate::bindings::wshost::websocket::{connection, event_types, handshake, hub, topics, types};
use crate::bindings::{ConnectionId, Error, Frame, Message, Opcode};
use crate::meters::Open;
use crate::pubsub::hub::Hub;
use crate::pubsub::topics::Subscriptions;
use crate::pubsub::topics::Topics;
use crate::wasm::guest_log::{GuestLog, Stream};
use crate::wasm::sandbox::{self, GuestLimiter, Sandboxed};
use crate::wasm::self_wake::Handled;
use crate::world::RouteContext;
use crate::world::conn::{self, Conn};
use crate::world::recover;
use crate::world::upgraded;
use crate::ws::inbox::Inbox;
use crate::ws::outbox::{Fanout, ROUND_PAST, wait_for_round};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use wasmtime::component::{Accessor, HasSelf, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wshost_config::Limits;

pub type Shared = Arc<Mutex<Conn>>;

/// A connection an instance serves: what its task calls on, and what the
/// route keeps for it until the task ends.
pub struct Served {
    pub conn: Shared,
    /// Its `--max-connections` slot and route count.
    pub slot: Open,
    /// The client's address (for quarantine).
    pub client: IpAddr,
}

pub struct CoroState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: GuestLimiter,
    pub host: CoroHost,
}

/// The connections of one instance, and what its route shares.
pub struct CoroHost {
    pub conns: HashMap<ConnectionId, Served>,
    /// The tasks that may be running: given control (a call of theirs
    /// returned, they started, or they called the host) and not waiting in
    /// a call since. The instance runs one task at a time, and only a task
    /// that runs can trap, so when it traps the culprit is among these
    /// ([`CoroHost::culprit`]); "the task whose call returned last" blamed
    /// innocent clients under load (the review's M10). A task that goes on
    /// computing after starting a call it does not await (a guest's own
    /// `join!`) and traps without calling the host again escapes it.
    runnable: HashSet<ConnectionId>,
    hub: Arc<Hub>,
    topics: Arc<Topics>,
    limits: Arc<Limits>,
    /// A task waited (called a waiting import) since the sandbox last asked.
    waited: bool,
    /// Writers of large fan-outs (publishes to [`crate::ws::outbox::CORK_AT`] sockets or more)
    /// not yet woken: they are once the instance's current turn of guest
    /// work is over, so each takes the turn's frames in one write, as the
    /// event world's batches do. A turn is one of wasmtime's items of
    /// guest work (it polls the loop before each): a task running until it
    /// must wait. A task whose `recv`s find its inbox full of a burst takes
    /// the whole burst in one turn, its publishes with it. A very large
    /// fan-out's writers are woken over a few turns of the loop
    /// ([`crate::ws::outbox::Cork::uncork_in_slices`]), as the event world's are, and the
    /// next publish waits for the round the publishing turn before started
    /// (holding the instance, as the event world's instance waits between
    /// batches): the instance's publishes never run more than one
    /// publishing turn ahead of a round's writers ([`Fanout`]).
    fanout: Fanout,
    /// A task published in the current turn.
    published: bool,
    /// Wakes the instance's loop, which uncorks when next polled: between
    /// turns of guest work (a waker, not a `Notify`: the loop and the
    /// guests run on one thread, with the store, and need no lock).
    turn_over: Option<Waker>,
    /// Messages its tasks received since the instance was last woken.
    handled: Handled,
    /// Calls of the current turn that were done at once (see
    /// [`TURN_BUDGET`]).
    calls_this_turn: u32,
}

/// Calls done at once (a `recv` that finds a frame waiting, a `push` with
/// room) a task may make in one turn of its instance before it is made to
/// wait a moment: the instance runs one task at a time, and a task whose
/// client keeps its inbox full would otherwise never give the others a
/// turn (the review's M2). tokio's cooperative budget works the same way,
/// at 128 operations; a coro task's `recv` and `push` are fewer and
/// heavier, so 64. An echo at 200 µs of guest work a message, beside a
/// client 4 s of work ahead: answered within a few ms, not after the 4 s.
const TURN_BUDGET: u32 = 64;

impl CoroState {
    /// A guest gets no environment, arguments, files or sockets beyond its
    /// grants; its stdout and stderr go to the host's log, tagged with the
    /// route (many connections share the instance).
    pub fn new(
        route: Arc<str>,
        ctx: &RouteContext,
        limiter: GuestLimiter,
        handled: Handled,
    ) -> Self {
        let RouteContext {
            limits,
            hub,
            topics,
            ..
        } = ctx.clone();
        let logs = [Stream::Stdout, Stream::Stderr].map(|s| GuestLog::new(route.clone(), 0, s));
        let [stdout, stderr] = logs;
        let wasi = sandbox::wasi(&limits.grants, stdout, stderr);
        CoroState {
            wasi,
            table: sandbox::resource_table(limits.coro_tasks),
            limiter,
            host: CoroHost {
                conns: HashMap::new(),
                runnable: HashSet::new(),
                hub,
                topics,
                limits,
                waited: false,
                fanout: Fanout::default(),
                published: false,
                turn_over: None,
                handled,
                calls_this_turn: 0,
            },
        }
    }
}

impl WasiView for CoroState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Sandboxed for CoroState {
    fn limiter(&mut self) -> &mut GuestLimiter {
        &mut self.limiter
    }

    fn take_waited(&mut self) -> bool {
        std::mem::take(&mut self.host.waited)
    }
}

impl CoroHost {
    /// Between turns of guest work: wake the writers corked in the turn
    /// that has ended (ready once it has); pending with none corked, to be
    /// woken by the next large publish. After a turn that published, the
    /// round the publishing turn before started (if any) is owed: the next
    /// publish waits for it.
    pub fn poll_turn_over(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.calls_this_turn = 0;
        let corked = !self.fanout.cork().is_empty();
        if std::mem::take(&mut self.published) || corked {
            self.fanout.uncork(ROUND_PAST);
        }
        if corked {
            return Poll::Ready(());
        }
        match &mut self.turn_over {
            Some(waker) => waker.clone_from(cx.waker()),
            None => self.turn_over = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Before a publish or hub broadcast queues to the cork: wait for the
    /// round owed (the first publish of a turn), and mark the turn as
    /// publishing. A wait for the round is the task's waiting, not its
    /// computing: its CPU budget starts again (as the handler world's).
    async fn before_publish(&mut self) {
        if let Some(before) = self.fanout.take_round_to_wait_for() {
            let ((), suspended) = sandbox::suspends(|| wait_for_round(before)).await;
            self.waited |= suspended;
        }
        self.published = true;
    }

    /// After it: a small fan-out's writers are woken now; a large one's
    /// stay corked and the loop is told, to wake them as the turn ends.
    fn after_publish(&mut self) {
        if self.fanout.cork().uncork_small()
            && let Some(loop_) = &self.turn_over
        {
            loop_.wake_by_ref();
        }
    }

    /// A call was done at once (it took a frame waiting, or queued a push
    /// without waiting): one more of the turn's budget spent.
    fn done_at_once(&mut self) {
        self.calls_this_turn = self.calls_this_turn.saturating_add(1);
    }

    /// Whether the turn's budget is spent: the task's next call gives the
    /// others a turn before it does anything.
    fn turn_spent(&self) -> bool {
        self.calls_this_turn >= TURN_BUDGET
    }

    /// Task `id` has control: its call returned, it started, or it calls.
    pub fn resumed(&mut self, id: ConnectionId) {
        self.runnable.insert(id);
    }

    /// Task `id` waits in a call (or has ended): it runs no more until
    /// [`CoroHost::resumed`].
    pub fn waits(&mut self, id: ConnectionId) {
        self.runnable.remove(&id);
    }

    /// The clients (as `key` knows them: one of each) whose tasks could
    /// have been running. When the instance traps and they are one, that
    /// one did it (a client's own several connections do not hide it).
    pub fn suspects(&self, key: impl Fn(IpAddr) -> IpAddr) -> Vec<IpAddr> {
        let mut keys = HashSet::new();
        let clients = self.runnable.iter().filter_map(|id| self.conns.get(id));
        clients
            .map(|served| served.client)
            .filter(|&client| keys.insert(key(client)))
            .collect()
    }

    /// Connection `id` of this instance, for a call that may wait.
    fn waiting_on(&mut self, id: ConnectionId) -> Result<Shared, Error> {
        let served = self.conns.get(&id).ok_or(Error::UnknownConnection)?;
        let conn = served.conn.clone();
        self.waits(id);
        Ok(conn)
    }

    /// The inbox of connection `id` (none once closed: `recv` then returns
    /// at once, and its task runs on).
    fn inbox(&mut self, id: ConnectionId) -> Result<Option<Arc<Inbox>>, Error> {
        let inbox = self.now(id)?.inbox()?;
        if inbox.is_some() {
            self.waits(id);
        }
        Ok(inbox)
    }

    /// Connection `id`, for a call that does not wait (its task, calling,
    /// has control).
    fn now(&mut self, id: ConnectionId) -> Result<tokio::sync::MutexGuard<'_, Conn>, Error> {
        if self.conns.contains_key(&id) {
            self.runnable.insert(id);
        }
        let served = self.conns.get(&id).ok_or(Error::UnknownConnection)?;
        served.conn.try_lock().map_err(|_| {
            Error::Protocol(format!(
                "connection {id} is busy: a call of its task is waiting"
            ))
        })
    }
}

/// The `Conn` of `id`, taken out of the store.
fn conn<T>(acc: &Accessor<T, HasSelf<CoroHost>>, id: ConnectionId) -> Result<Shared, Error> {
    acc.with(|mut view| view.get().waiting_on(id))
}

/// Run `call` on connection `id` outside the store; note `id`'s task as
/// the one resumed with its result, and restart the instance's CPU budget
/// if the call really waited (as the handler world's `Conn` judges it).
async fn on<T, R>(
    acc: &Accessor<T, HasSelf<CoroHost>>,
    id: ConnectionId,
    call: impl AsyncFnOnce(&mut Conn) -> Result<R, Error>,
) -> Result<R, Error> {
    let conn = conn(acc, id)?;
    let (result, waited) = {
        let mut conn = conn.lock().await;
        let result = call(&mut conn).await;
        (result, conn.take_waited())
    };
    acc.with(|mut view| {
        let host = view.get();
        host.resumed(id);
        host.waited |= waited;
    });
    result
}

/// Before a call that may be done at once: if the turn's budget is spent,
/// wait a moment (pending once, woken at once), so the instance runs the
/// tasks that are ready before this one goes on. Nothing is taken yet, so a
/// guest that cancels the call meanwhile loses nothing; the task stays
/// among the runnable (it is calling) throughout.
async fn take_turns<T>(acc: &Accessor<T, HasSelf<CoroHost>>) {
    if !acc.with(|mut view| view.get().turn_spent()) {
        return;
    }
    let mut yielded = false;
    std::future::poll_fn(|cx| match std::mem::replace(&mut yielded, true) {
        true => Poll::Ready(()),
        false => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

impl<T> coro_connection::HostWithStore<T> for HasSelf<CoroHost> {
    async fn upgrade(
        acc: &Accessor<T, Self>,
        id: ConnectionId,
        protocol: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<(), Error> {
        on(acc, id, async |c| {
            handshake::Host::upgrade_with(c, protocol, headers).await
        })
        .await
    }

    /// Waits on the connection's inbox alone, not holding the connection:
    /// a small future, for what most tasks are doing most of the time.
    async fn recv(
        acc: &Accessor<T, Self>,
        id: ConnectionId,
        timeout_ms: Option<u32>,
    ) -> Result<Option<Frame>, Error> {
        take_turns(acc).await;
        let inbox = acc.with(|mut view| view.get().inbox(id))?;
        let Some(inbox) = inbox else {
            return Ok(None); // closed
        };
        let deadline = timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms.into()));
        let (received, suspended) =
            sandbox::suspends(|| upgraded::recv_from(&inbox, deadline)).await;
        acc.with(|mut view| {
            let host = view.get();
            host.resumed(id);
            host.handled.one();
            // A frame, or a real wait: not "closed" said again at once.
            host.waited |= suspended || matches!(received, Ok(Some(_)));
            if !suspended {
                host.done_at_once();
            }
        });
        received
    }

    /// Queued within one visit to the store, most pushes are done there;
    /// one waits outside for its peer to take what is queued (or, while
    /// another call of its task holds the connection, for that call).
    async fn push(
        acc: &Accessor<T, Self>,
        id: ConnectionId,
        data: Vec<u8>,
        op: Opcode,
        fin: bool,
    ) -> Result<(), Error> {
        take_turns(acc).await;
        let queued = acc.with(|mut view| {
            let host = view.get();
            if !host.conns.contains_key(&id) {
                return Err(Error::UnknownConnection);
            }
            // Calling, its task has control.
            host.runnable.insert(id);
            let served = &host.conns[&id];
            let queued = match served.conn.try_lock() {
                Ok(mut conn) => Ok(conn.push_now(data, op, fin)?),
                Err(_) => Err(data),
            };
            // Queued: the guest made progress (a push that fails at once,
            // to a closed socket, does not restart the budget).
            host.waited |= queued.is_ok();
            if matches!(queued, Ok(None)) {
                host.done_at_once();
            }
            if !matches!(queued, Ok(None)) {
                host.waits(id); // it waits for room, or for its connection
            }
            Ok::<_, Error>(queued)
        })?;
        match queued {
            Ok(None) => Ok(()),
            Ok(Some(outbox)) => {
                outbox.room().await;
                acc.with(|mut view| view.get().resumed(id));
                Ok(())
            }
            Err(data) => {
                on(acc, id, async |c| {
                    connection::Host::push(c, data, op, fin).await
                })
                .await
            }
        }
    }

    async fn push_close(
        acc: &Accessor<T, Self>,
        id: ConnectionId,
        code: u16,
        reason: String,
    ) -> Result<(), Error> {
        on(acc, id, async |c| {
            connection::Host::push_close(c, code, reason).await
        })
        .await
    }

    async fn close(acc: &Accessor<T, Self>, id: ConnectionId) {
        let closed = on(acc, id, async |c| {
            connection::Host::close(c).await;
            Ok(())
        });
        let _ = closed.await;
    }

    async fn respond(
        acc: &Accessor<T, Self>,
        id: ConnectionId,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<(), Error> {
        on(acc, id, async |c| {
            connection::Host::respond(c, status, headers, body).await
        })
        .await
    }
}

impl coro_connection::Host for CoroHost {}
impl types::Host for CoroHost {}
impl event_types::Host for CoroHost {}

impl hub::Host for CoroHost {
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
        conn::hub_send(&self.hub, &self.topics, target, (data, op), max)
    }

    /// Corked as a publish is: woken as the turn ends.
    async fn broadcast(&mut self, data: Vec<u8>, op: Opcode) -> Result<u32, Error> {
        let frame = conn::hub_message(data, op, self.limits.max_message_size)?;
        self.before_publish().await;
        let delivered = self.hub.broadcast(&frame, self.fanout.cork());
        self.after_publish();
        Ok(delivered)
    }
}

/// A task recovers its own connection (any of the instance's, by id).
impl recover::Subscribing for CoroHost {
    fn topics(&self) -> &Topics {
        &self.topics
    }

    fn with_subscriptions<R>(
        &mut self,
        id: ConnectionId,
        f: impl FnOnce(&mut Subscriptions) -> R,
    ) -> Result<R, Error> {
        self.now(id)?.with_subscriptions(id, f)
    }
}
recover::imports_for!(CoroHost);
crate::world::presence::imports_for!(CoroHost);

/// A task subscribes its own connection (any of the instance's, by id).
impl topics::Host for CoroHost {
    async fn subscribe(&mut self, id: ConnectionId, topic: String) -> Result<bool, Error> {
        topics::Host::subscribe(&mut *self.now(id)?, id, topic).await
    }

    async fn unsubscribe(&mut self, id: ConnectionId, topic: String) -> Result<bool, Error> {
        topics::Host::unsubscribe(&mut *self.now(id)?, id, topic).await
    }

    async fn publish(
        &mut self,
        topic: String,
        msg: Message,
        exclude: Option<ConnectionId>,
    ) -> Result<u32, Error> {
        self.before_publish().await;
        let max = self.limits.max_message_size;
        let delivered = self
            .topics
            .publish_message(&topic, &msg, exclude, max, self.fanout.cork());
        self.after_publish();
        delivered
    }

    async fn subscribers(&mut self, topic: String) -> u32 {
        self.topics.subscribers(&topic)
    }
}
