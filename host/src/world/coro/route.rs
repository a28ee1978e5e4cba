//! A coro-world route: each request is a task (`serve`) of one of a few
//! instances, many tasks to an instance (component-model async). A task
//! that waits (`recv`, `push`, ...) suspends alone; its instance runs the
//! others meanwhile, in the instance's own tokio task.
//!
//! An instance takes up to `--coro-tasks` tasks; past that the route
//! starts another. When a task traps (or its instance runs past its
//! CPU or memory budget) the instance is lost with every task in it: their
//! connections are ended as a failed handler's are (Close 1011 once
//! upgraded, 500 before), tasks not yet started go to another instance,
//! and the next request gets a fresh one. A client address whose requests
//! crashed an instance is served from then on in an instance of its own,
//! so another crash costs no one else (`Quarantine`); one that crashes
//! that too is refused for a while (503).

use crate::bindings::coro::CoroPre;
use crate::bindings::{ConnectionId, Request};
use crate::meters::{self, Open};
use crate::wasm::sandbox;
use crate::wasm::self_wake::{self, Handled};
use crate::world::RouteContext;
use crate::world::conn::{Conn, Outcome};
use crate::world::coro::state::{CoroState, Served};
use crate::world::limits::LimitsExt;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;
use wasmtime::component::TypedFunc;
use wasmtime::{Engine, Store};

/// The threads that can run instances at once: `WSHOST_CORES` when set
/// (a container whose CPU quota is below what the machine shows; the tests,
/// to play a large host), else the machine's available parallelism.
fn parallelism() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::env::var("WSHOST_CORES")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The scheduling rule, which the pool's size must match: shared instances
/// a coro route runs at most. One per core first (kept while the route
/// lives, however few tasks each has), then more only as tasks fill them,
/// `coro_tasks` to an instance.
fn max_shared_instances(max_connections: usize, coro_tasks: usize) -> usize {
    parallelism().min(max_connections) + max_connections.div_ceil(coro_tasks)
}

/// Versions of a coro route the pool has room for at once: the current
/// one and one whose old instances drain after a reload.
pub const VERSIONS: usize = 2;

/// Instance slots of one coro route in the pool: its shared instances
/// ([`max_shared_instances`]) for each of its [`VERSIONS`] (old instances
/// draining after reloads or failures), and the quarantined clients' own.
pub fn coro_instances(max_connections: usize, coro_tasks: usize) -> usize {
    VERSIONS * (max_shared_instances(max_connections, coro_tasks) + 1) + MAX_ISOLATED
}

/// How long a client address that crashed its own instance is refused.
const BANNED_FOR: Duration = Duration::from_secs(60);

/// How long a client is served alone after it crashed a shared instance
/// (then it shares again, and its room is another's): long enough that a
/// crasher crashes its own instance and is refused, not for the route's
/// life. A suspect (one of several clients that could have crashed it:
/// [`UNATTRIBUTED_LIMIT`]) is served alone for [`BANNED_FOR`].
const ISOLATED_FOR: Duration = Duration::from_secs(600);

/// Client addresses a route serves in instances of their own at most;
/// past them a client that crashes a shared instance is refused at once
/// (many crashing addresses must not take every instance slot).
pub const MAX_ISOLATED: usize = 8;

/// What the quarantine knows a client by: its address; for IPv6 its /64,
/// the network one subscriber is given and picks addresses from at will
/// (as rate limiters count it): else each crash could come from a new
/// address, and crash a shared instance again.
fn quarantine_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// One request for an instance to serve.
pub struct Task {
    pub id: ConnectionId,
    pub conn: Conn,
    pub request: Request,
    /// Its `--max-connections` slot and its route's count, held until it ends.
    pub slot: Open,
    /// The client's address, for `Quarantine`.
    pub client: IpAddr,
}

/// What an instance's queue carries.
enum Queued {
    Task(Box<Task>),
    /// The route was replaced (a reload): let go once idle.
    Retire,
}

/// A route's handle on one of its instances.
struct Instance {
    queue: mpsc::UnboundedSender<Queued>,
    /// The thread it was started on: its event loop's, which it runs on
    /// for its life (see `server::loops`).
    thread: std::thread::ThreadId,
    /// Tasks queued to it or running in it.
    tasks: AtomicUsize,
    /// Serves only this client (its [`quarantine_key`]: quarantined).
    only: Option<IpAddr>,
}

/// Crashes no one could be blamed for, on one route within [`BANNED_FOR`],
/// at which every client whose task could have been running is served
/// alone (not refused: one is refused once it crashes its own instance).
/// Without it a client crashed a shared instance again and again beside a
/// busy neighbour (whose calls, completing, keep it among the suspects) and
/// was never blamed.
const UNATTRIBUTED_LIMIT: usize = 3;

/// Who is blamed for a lost instance.
enum Blame {
    /// No one: our own bug, or a crash no one could be blamed for (yet).
    None,
    /// The one client whose tasks could have been running.
    Culprit(IpAddr),
    /// Crashes no one could be blamed for came too often: every client that
    /// could have done this one.
    Suspects(Vec<IpAddr>),
}

/// A client served in an instance of its own, until then.
struct Isolated {
    instance: Arc<Instance>,
    until: Instant,
}

/// Clients (by [`quarantine_key`]) whose requests crashed an instance.
#[derive(Default)]
struct Quarantine {
    /// Served in an instance of their own, for a while.
    isolated: HashMap<IpAddr, Isolated>,
    /// Refused until then.
    banned: HashMap<IpAddr, Instant>,
    /// When the crashes no one was blamed for came, within [`BANNED_FOR`].
    unattributed: std::collections::VecDeque<Instant>,
}

impl Quarantine {
    /// Forget isolations over by `now`: their clients share again.
    fn expire(&mut self, now: Instant) {
        self.isolated.retain(|_, isolated| isolated.until > now);
    }

    /// A crash no one could be blamed for came at `now`: whether such
    /// crashes now come too often ([`UNATTRIBUTED_LIMIT`]).
    fn unattributed(&mut self, now: Instant) -> bool {
        while self
            .unattributed
            .front()
            .is_some_and(|&at| now.duration_since(at) >= BANNED_FOR)
        {
            self.unattributed.pop_front();
        }
        self.unattributed.push_back(now);
        self.unattributed.len() >= UNATTRIBUTED_LIMIT
    }

    /// Refuse `key` for [`BANNED_FOR`] from `now`; bans over by then are
    /// forgotten, so the map holds the last minute's crashers, not every
    /// address that ever crashed (a client need never come back).
    fn ban(&mut self, key: IpAddr, now: Instant) {
        self.banned.retain(|_, until| *until > now);
        self.banned.insert(key, now + BANNED_FOR);
    }

    fn is_banned(&mut self, key: IpAddr, now: Instant) -> bool {
        match self.banned.get(&key) {
            Some(until) if now < *until => true,
            Some(_) => {
                self.banned.remove(&key);
                false
            }
            None => false,
        }
    }
}

pub struct CoroRoute {
    pub path: Arc<str>,
    /// Its limits, hub, the server's topics and its meters.
    pub ctx: RouteContext,
    engine: Engine,
    pre: CoroPre<CoroState>,
    /// The shared instances, newest last.
    instances: Mutex<Vec<Arc<Instance>>>,
    quarantine: Mutex<Quarantine>,
    /// Replaced by a reload: its instances serve their tasks to the end,
    /// then go.
    retired: AtomicBool,
}

impl CoroRoute {
    pub fn new(
        path: Arc<str>,
        engine: &Engine,
        pre: CoroPre<CoroState>,
        ctx: RouteContext,
    ) -> Arc<Self> {
        Arc::new(CoroRoute {
            path,
            ctx,
            engine: engine.clone(),
            pre,
            instances: Mutex::default(),
            quarantine: Mutex::default(),
            retired: AtomicBool::new(false),
        })
    }

    /// The route was replaced (a reload): each instance goes once idle,
    /// its open connections served to their end on this code.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let quarantine = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        let isolated = quarantine.isolated.values().map(|i| &i.instance);
        for instance in instances.iter().chain(isolated) {
            let _ = instance.queue.send(Queued::Retire);
        }
    }

    /// Whether requests from `client` are refused (it crashed an instance
    /// of its own lately).
    pub fn refuses(&self, client: IpAddr) -> bool {
        let client = quarantine_key(client);
        let mut quarantine = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        quarantine.is_banned(client, Instant::now())
    }

    /// Hand `task` to an instance with room (starting one when none has).
    pub fn serve(self: &Arc<Self>, task: Task) {
        let instance = match self.quarantined(task.client) {
            Some(own) => own,
            None => self.shared_instance(),
        };
        instance.tasks.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(Queued::Task(task))) =
            instance.queue.send(Queued::Task(Box::new(task)))
        {
            // It was lost or let go just now: another one takes the task.
            self.serve(*task);
        }
    }

    /// The instance of its own a quarantined client's requests go to.
    fn quarantined(self: &Arc<Self>, client: IpAddr) -> Option<Arc<Instance>> {
        let client = quarantine_key(client);
        let mut quarantine = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        quarantine.expire(Instant::now());
        let own = quarantine.isolated.get_mut(&client)?;
        if own.instance.queue.is_closed() {
            own.instance = self.start(Some(client));
        }
        Some(own.instance.clone())
    }

    /// The shared instance a new task goes to: one on this thread (the
    /// connection's event loop, where its socket is registered), so its
    /// reads, its guest and its writes wake no other thread. An instance
    /// runs on one thread; the least loaded here with room takes the task,
    /// the first ones (kept for the route's life, [`CoroRoute::lets_go_when_idle`])
    /// before the others (started when those were full, or on a loop that
    /// had none, and let go once idle), the oldest first. With none here,
    /// one is started here. (On tokio's work-stealing runtime, spreading
    /// 64 connections over four instances instead of two echoed 0.9x as
    /// fast on two cores: fewer tasks to each turn of an instance, more
    /// instances to wake.)
    fn shared_instance(self: &Arc<Self>) -> Arc<Instance> {
        let cap = self.ctx.limits.coro_tasks;
        let tasks = |i: &&Arc<Instance>| i.tasks.load(Ordering::Relaxed);
        let here = std::thread::current().id();
        let room_here = |i: &&Arc<Instance>| i.thread == here && tasks(i) < cap;
        let mut instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        instances.retain(|i| !i.queue.is_closed());
        let (head, extra) = instances.split_at(parallelism().min(instances.len()));
        let pick = (head.iter().filter(room_here).min_by_key(tasks))
            .or_else(|| extra.iter().find(room_here));
        // No room for another in the pool's share of this route: the least
        // loaded takes the task over its cap (never a 500 for lack of slots).
        let full = instances.len() >= max_shared_instances(self.ctx.limits.max_connections, cap);
        let pick = pick.or_else(|| full.then(|| instances.iter().min_by_key(tasks)).flatten());
        match pick {
            Some(instance) => instance.clone(),
            None => {
                let instance = self.start(None);
                instances.push(instance.clone());
                instance
            }
        }
    }

    /// Why `instance`, idle, is let go (its memory and pool slot with it),
    /// if it is: the route is retired; or it is not one of the route's
    /// first instances (one per core, kept while the route lives) but an
    /// extra one, started for a burst, or a quarantined client's own.
    fn lets_go_when_idle(&self, instance: &Instance) -> Option<&'static str> {
        if self.retired.load(Ordering::SeqCst) {
            return Some("its route replaced");
        }
        let instances = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let at = instances.iter().position(|i| std::ptr::eq(&**i, instance));
        at.is_none_or(|at| at >= parallelism())
            .then_some("beyond one per core")
    }

    /// Start an instance's task.
    fn start(self: &Arc<Self>, only: Option<IpAddr>) -> Arc<Instance> {
        let (queue, tasks) = mpsc::unbounded_channel();
        let instance = Arc::new(Instance {
            queue,
            thread: std::thread::current().id(),
            tasks: AtomicUsize::new(0),
            only,
        });
        let span = tracing::info_span!("coro", route = %self.path);
        // Unconstrained: tokio's budget per task is sized for one
        // connection's task; an instance runs the turns of thousands, and
        // its forced yields to the back of the run queue held all of them
        // up (echo at 64 connections: p99 2.5-4.3 ms with the budget, 1.6
        // without). A turn still ends when its guests wait, and a guest
        // that computes is stopped by its CPU budget.
        // wasmtime's event loop wakes the task as it runs guest calls:
        // taken in place, not as yields that wake another worker.
        let handled = Handled::default();
        let running = meters::Running::new(&self.path);
        let run = self.clone().run(instance.clone(), tasks, handled.clone());
        let run = async move {
            run.await;
            drop(running);
        };
        let run = self_wake::run(run, handled);
        tokio::spawn(tokio::task::unconstrained(run).instrument(span));
        instance
    }

    /// A fresh, sandboxed store for one instance.
    fn store(&self, handled: Handled) -> Store<CoroState> {
        let limiter = self.ctx.limits.limiter();
        let mut store = Store::new(
            &self.engine,
            CoroState::new(self.path.clone(), &self.ctx, limiter, handled),
        );
        sandbox::sandbox(&mut store);
        store
    }

    /// The median time to make a new instance (`wshost check`): made once
    /// per `--coro-tasks` connections, not per connection.
    pub async fn instantiate_time(&self, rounds: usize) -> anyhow::Result<Duration> {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let mut store = self.store(Handled::default());
            let started = Instant::now();
            let made = self.pre.instantiate_async(&mut store).await;
            times.push(started.elapsed());
            made.map_err(anyhow::Error::from)?;
        }
        times.sort_unstable();
        Ok(times[times.len() / 2])
    }

    /// The instance's life: take tasks and run them concurrently until it
    /// fails (or the route is gone and its last task has ended).
    async fn run(
        self: Arc<Self>,
        handle: Arc<Instance>,
        mut queue: mpsc::UnboundedReceiver<Queued>,
        handled: Handled,
    ) {
        let mut store = self.store(handled);
        let started = Instant::now();
        let instantiated = self.pre.instance_pre().instantiate_async(&mut store).await;
        let serve = instantiated.and_then(|instance| instance.get_typed_func(&mut store, "serve"));
        let serve = match serve {
            Ok(serve) => serve,
            Err(e) => {
                tracing::error!("cannot instantiate the coro guest: {e:?}");
                queue.close();
                while let Some(queued) = queue.recv().await {
                    if let Queued::Task(task) = queued {
                        let failed = Outcome::Failed("handler could not start".into());
                        finish(task.conn, failed, task.slot);
                    }
                }
                return;
            }
        };
        self.ctx.meters.instantiate.record(started.elapsed());
        // A panic of ours in a host function loses the instance as a trap
        // does (its tasks end with 1011 or 500, queued ones go elsewhere).
        let ran = sandbox::guarded(|| {
            store.run_concurrent(async |acc| {
                serve_tasks(serve, acc, &mut queue, (&self, &handle)).await
            })
        })
        .await;
        let failure = match ran {
            Ok(Ok(())) => return,
            Ok(Err((err, culprit))) => (sandbox::failure(&err), Blame::Culprit(culprit)),
            // Our own bug: no client is to blame.
            Err(err) if err.is::<sandbox::HostPanic>() => (sandbox::failure(&err), Blame::None),
            // A trap aborts the whole instance, and wasmtime does not say
            // in which task: the culprit is the one client whose tasks
            // could have been running, if there was one; otherwise no one is
            // blamed (a guess blamed innocent clients under load), unless
            // such crashes come too often: then every suspect is served
            // alone ([`Quarantine::unattributed`]).
            Err(err) => {
                let suspects = store.data().host.suspects(quarantine_key);
                (sandbox::failure(&err), self.suspected(&handle, suspects))
            }
        };
        self.lost(&handle, store, queue, failure);
    }

    /// Who is blamed for a trap of `handle`'s instance, `suspects` the
    /// clients whose tasks could have been running: the one there is; an
    /// isolated instance's own client when none could have been (a task
    /// computing on after a call it did not await); no one when several
    /// could have been, unless that happens too often
    /// ([`UNATTRIBUTED_LIMIT`]): then all of them.
    fn suspected(&self, handle: &Instance, suspects: Vec<IpAddr>) -> Blame {
        match (suspects.len(), handle.only) {
            (1, _) => return Blame::Culprit(suspects[0]),
            (0, Some(own)) => return Blame::Culprit(own),
            _ => {}
        }
        meters::quarantined(&self.path, "unattributed");
        let mut quarantine = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        let too_often = quarantine.unattributed(Instant::now());
        let n = suspects.len();
        if !too_often || n == 0 {
            tracing::warn!(
                "instance crash not attributed: tasks of {n} clients could have been running; no one quarantined"
            );
            return Blame::None;
        }
        tracing::warn!(
            "instance crash not attributed, {UNATTRIBUTED_LIMIT} or more within {BANNED_FOR:?}: the {n} clients whose tasks could have been running are suspects"
        );
        Blame::Suspects(suspects)
    }

    /// The instance failed: end its tasks, hand on those not started, and
    /// quarantine the client whose task failed.
    fn lost(
        self: &Arc<Self>,
        handle: &Instance,
        mut store: Store<CoroState>,
        mut queue: mpsc::UnboundedReceiver<Queued>,
        (why, blamed): (String, Blame),
    ) {
        queue.close();
        let conns = std::mem::take(&mut store.data_mut().host.conns);
        // The tasks' calls still waiting hold their connections: gone with it.
        drop(store);
        tracing::warn!("instance lost with {} tasks: {why}", conns.len());
        for served in conns.into_values() {
            end(served, Outcome::Failed(why.clone()));
        }
        while let Ok(queued) = queue.try_recv() {
            if let Queued::Task(task) = queued {
                handle.tasks.fetch_sub(1, Ordering::Relaxed);
                self.serve(*task);
            }
        }
        if self.retired.load(Ordering::SeqCst) {
            // New requests go to the route that replaced this one, whose
            // quarantine starts anew (as with new code).
            return;
        }
        let now = Instant::now();
        let mut quarantine = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
        quarantine.expire(now);
        match blamed {
            Blame::None => {}
            Blame::Culprit(client) => self.blame(&mut quarantine, handle, client),
            // Served alone for a while, as there is room (those left out
            // may be next time); refused only once one crashes its own
            // instance (then it is the culprit).
            Blame::Suspects(clients) => {
                for client in clients {
                    let key = quarantine_key(client);
                    if quarantine.isolated.len() >= MAX_ISOLATED {
                        tracing::warn!(%client, "a suspect of repeated crashes, but {MAX_ISOLATED} clients are served alone already");
                        continue;
                    }
                    if let std::collections::hash_map::Entry::Vacant(entry) =
                        quarantine.isolated.entry(key)
                    {
                        tracing::warn!(%client, "a suspect of repeated crashes: served alone for {BANNED_FOR:?}");
                        meters::quarantined(&self.path, "isolated");
                        let instance = self.start(Some(key));
                        let until = now + BANNED_FOR;
                        entry.insert(Isolated { instance, until });
                    }
                }
            }
        }
    }

    /// `client` crashed `handle`'s instance: serve it alone from now on;
    /// refuse it if it crashed its own, or if too many are served alone.
    fn blame(self: &Arc<Self>, quarantine: &mut Quarantine, handle: &Instance, client: IpAddr) {
        let key = quarantine_key(client);
        if handle.only == Some(key) {
            tracing::warn!(%client, "crashed its own instance: refused for {BANNED_FOR:?}");
            quarantine.isolated.remove(&key);
            quarantine.ban(key, Instant::now());
            meters::quarantined(&self.path, "banned");
        } else if quarantine.isolated.len() >= MAX_ISOLATED {
            tracing::warn!(
                %client,
                "crashed a shared instance, {MAX_ISOLATED} clients served alone already: refused for {BANNED_FOR:?}"
            );
            quarantine.ban(key, Instant::now());
            meters::quarantined(&self.path, "banned");
        } else {
            tracing::warn!(%client, "crashed a shared instance: served alone from now on");
            meters::quarantined(&self.path, "isolated");
            let until = Instant::now() + ISOLATED_FOR;
            match quarantine.isolated.get_mut(&key) {
                // A suspect served alone already: for longer now.
                Some(isolated) => isolated.until = until,
                None => {
                    let instance = self.start(Some(key));
                    quarantine
                        .isolated
                        .insert(key, Isolated { instance, until });
                }
            }
        }
    }
}

/// The guest's export: `serve(conn, request) -> result<_, string>`.
type Serve = TypedFunc<(ConnectionId, Request), (Result<(), String>,)>;

/// Run every task queued to the instance, each as a concurrent call of
/// `serve`, until the queue is closed (by the route, or here when an extra
/// instance is idle) and all have ended. A trap ends it with the error and
/// the client of the task that trapped.
async fn serve_tasks(
    serve: Serve,
    acc: &wasmtime::component::Accessor<CoroState>,
    queue: &mut mpsc::UnboundedReceiver<Queued>,
    (route, handle): (&CoroRoute, &Instance),
) -> Result<(), (wasmtime::Error, IpAddr)> {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    while open || !running.is_empty() {
        // Polled between turns of guest work: what a turn published to
        // many goes out now.
        let turn_over = std::future::poll_fn(|cx| {
            acc.with(|mut store| store.data_mut().host.poll_turn_over(cx))
        });
        tokio::select! {
            // In order, without a random draw: the loop is polled at
            // every turn of the instance.
            biased;
            () = turn_over => {}
            queued = queue.recv(), if open => {
                let task = match queued {
                    Some(Queued::Task(task)) => task,
                    Some(Queued::Retire) => {
                        if handle.tasks.load(Ordering::Relaxed) == 0 {
                            queue.close(); // idle: let go now
                        }
                        continue;
                    }
                    None => {
                        open = false;
                        continue;
                    }
                };
                let Task { id, conn, request, slot, client } = *task;
                // Started here, the call's state is the store's; what waits
                // for its end is a receiver, not the call with its request.
                let call = acc.with(|mut store| {
                    let host = &mut store.data_mut().host;
                    let conn = Arc::new(tokio::sync::Mutex::new(conn));
                    host.conns.insert(id, Served { conn, slot, client });
                    host.resumed(id);
                    serve.start_call_concurrent(&mut store, (id, request))
                });
                let call = call.map_err(|err| (err, client))?;
                running.push(async move {
                    let served = serve.finish_call_concurrent(acc, call).await;
                    (id, client, served.map(|(result,)| result))
                });
            }
            Some((id, client, served)) = running.next() => {
                if handle.tasks.fetch_sub(1, Ordering::Relaxed) == 1
                    && let Some(why) = route.lets_go_when_idle(handle)
                {
                    // Tasks queued before this still run; one sent after
                    // is handed to another instance.
                    tracing::debug!("instance idle, {why}: let go");
                    queue.close();
                }
                let outcome = match served {
                    Ok(Ok(())) => Outcome::Returned,
                    Ok(Err(why)) => {
                        tracing::warn!("handler of connection {id} returned an error: {why}");
                        Outcome::Failed(why)
                    }
                    Err(err) => return Err((err, client)),
                };
                let served = acc.with(|mut store| {
                    let host = &mut store.data_mut().host;
                    host.waits(id);
                    host.conns.remove(&id)
                });
                if let Some(served) = served {
                    end(served, outcome);
                }
            }
        }
    }
    Ok(())
}

/// End a served connection as its task's outcome says (unless a call
/// still holds it: then it ends with that call).
fn end(served: Served, outcome: Outcome) {
    if let Ok(conn) = Arc::try_unwrap(served.conn) {
        finish(conn.into_inner(), outcome, served.slot);
    }
}

/// End a task's connection as its outcome says, off the instance's task.
fn finish(conn: Conn, outcome: Outcome, slot: Open) {
    let id = conn.id();
    tokio::spawn(async move {
        conn.finish(outcome).await;
        tracing::debug!("connection {id} ended");
        drop(slot);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_known_by_their_64_and_ipv4_by_its_address() {
        let key = |s: &str| quarantine_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn isolations_end_and_their_room_is_given_back() {
        let mut quarantine = Quarantine::default();
        let t0 = Instant::now();
        let instance = Arc::new(Instance {
            queue: mpsc::unbounded_channel().0,
            thread: std::thread::current().id(),
            tasks: AtomicUsize::new(0),
            only: None,
        });
        let ip = IpAddr::from([203, 0, 113, 1]);
        let until = t0 + BANNED_FOR;
        quarantine.isolated.insert(ip, Isolated { instance, until });
        quarantine.expire(t0 + BANNED_FOR / 2);
        assert_eq!(quarantine.isolated.len(), 1);
        quarantine.expire(t0 + BANNED_FOR);
        assert!(quarantine.isolated.is_empty());
    }

    #[test]
    fn unattributed_crashes_are_too_many_at_three_within_a_minute() {
        let mut quarantine = Quarantine::default();
        let t0 = Instant::now();
        assert!(!quarantine.unattributed(t0));
        assert!(!quarantine.unattributed(t0 + BANNED_FOR / 2));
        assert!(quarantine.unattributed(t0 + BANNED_FOR / 2));
        // The first has aged out: two within the last minute.
        let later = t0 + BANNED_FOR + Duration::from_secs(1);
        assert!(quarantine.unattributed(later));
        let much_later = later + BANNED_FOR * 2;
        assert!(!quarantine.unattributed(much_later));
    }

    #[test]
    fn bans_end_and_ended_ones_are_forgotten_at_the_next_ban() {
        let mut quarantine = Quarantine::default();
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::from([203, 0, 113, n]);
        for n in 1..=3 {
            quarantine.ban(ip(n), t0);
        }
        assert!(quarantine.is_banned(ip(1), t0 + BANNED_FOR / 2));
        assert!(!quarantine.is_banned(ip(1), t0 + BANNED_FOR));
        quarantine.ban(ip(4), t0 + BANNED_FOR + Duration::from_secs(1));
        assert_eq!(quarantine.banned.keys().collect::<Vec<_>>(), [&ip(4)]);
    }
}
