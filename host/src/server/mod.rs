//! Accepting connections, routing requests, and running them: one handler
//! instance per request on a handler-world route, the route's one instance
//! on an event-world route ([`crate::world::events::route`]), a task of an
//! instance on a coro route. Beside it: loading a component into the route
//! of its world ([`component`]), what a reload may swap ([`reload`]), the
//! built-in demo ([`demo`]) and memory given back after bursts ([`trim`]).
//!
//! Routing is by exact path: `--route /chat=...` serves `/chat` (any query
//! string) but not `/chat/` or `/chat/room`; there is no prefix matching. An
//! unknown path is answered `404` without instantiating anything.

pub mod component;
pub mod demo;
pub mod loops;
pub mod reload;
pub mod trim;

use crate::bindings::{HandlerPre, Request};
use crate::meters::{self, Open, RouteMeters};
use crate::net::http;
use crate::net::proxy_protocol::{self, ProxyHeaderError};
use crate::net::tls::Tls;
use crate::net::transport::Stream;
use crate::pubsub::hub::Hub;
use crate::pubsub::topics::Topics;
use crate::server::reload::{Version, Versions};
use crate::wasm::sandbox;
use crate::world::RouteContext;
use crate::world::beside::{self, Side};
use crate::world::conn::{Conn, Outcome};
use crate::world::coro::route::{CoroRoute, Task};
use crate::world::events::route::EventRoute;
use crate::world::events::socket::{self as event_socket, Accepted};
use crate::world::handler::HostState;
use crate::world::limits::LimitsExt;
use crate::ws::alarms::{Alarms, Shutdown};
use crate::ws::socket::turned_true;
use anyhow::{Context, Result, bail};
use component::{Engines, Loaded};
use loops::Loops;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::Instrument;
use wasmtime::Store;
use wshost_config::{Limits, RouteSpec};
use wshost_proto::forwarded;

/// What an open connection holds of the server until it ends: its
/// `--max-connections` permit and its place on an event loop (the loop
/// counts it open: see [`loops`]).
struct Slot {
    _permit: OwnedSemaphorePermit,
    placed: loops::Placed,
    loops: Arc<Loops>,
}

impl Slot {
    /// The connection moves to the loop running on `thread`: counted there.
    fn moved_to(&mut self, thread: std::thread::ThreadId) {
        if let Some(placed) = self.loops.place_on(thread) {
            self.placed = placed;
        }
    }
}

/// 503 refusals served at once; past them a connection over the limit is
/// dropped without one (a flood must not grow tasks without bound).
const MAX_REFUSALS: usize = 256;

/// A route's component, as its world runs it.
pub enum Route {
    Handler(Arc<HandlerRoute>),
    Events(Arc<EventRoute>),
    Coro(Arc<CoroRoute>),
}

/// A handler-world route: its compiled handler and the hub of its live connections.
pub struct HandlerRoute {
    pub path: Arc<str>,
    pre: HandlerPre<HostState>,
    /// Its limits and grants, hub, the server's topics and its meters.
    pub ctx: RouteContext,
}

impl Route {
    pub fn path(&self) -> &Arc<str> {
        match self {
            Route::Handler(route) => &route.path,
            Route::Events(route) => &route.path,
            Route::Coro(route) => &route.path,
        }
    }

    /// This route's limits and grants.
    pub fn limits(&self) -> &Arc<Limits> {
        match self {
            Route::Handler(route) => &route.ctx.limits,
            Route::Events(route) => &route.limits,
            Route::Coro(route) => &route.ctx.limits,
        }
    }

    pub fn meters(&self) -> &RouteMeters {
        match self {
            Route::Handler(route) => &route.ctx.meters,
            Route::Events(route) => &route.meters,
            Route::Coro(route) => &route.ctx.meters,
        }
    }

    /// This version of the route, alive while it holds instances (an
    /// event or coro route; a handler route's instances are per request).
    fn version(&self) -> Option<Version> {
        match self {
            Route::Handler(_) => None,
            Route::Events(route) => Some(Arc::downgrade(route) as Version),
            Route::Coro(route) => Some(Arc::downgrade(route) as Version),
        }
    }

    /// Versions of this route the instance pool has room for at once.
    fn versions_room(&self) -> Option<usize> {
        match self {
            Route::Handler(_) => None,
            Route::Events(_) => Some(component::EVENT_GENERATIONS),
            Route::Coro(_) => Some(crate::world::coro::route::VERSIONS),
        }
    }

    /// The world the route's component implements.
    pub fn world(&self) -> &'static str {
        match self {
            Route::Handler(_) => "handler",
            Route::Events(_) => "events",
            Route::Coro(_) => "coro",
        }
    }
}

/// A request read off a new connection, and the route it is for.
struct Arrived {
    stream: Stream,
    head: http::RequestHead,
    /// What the client sent after the head.
    early: Vec<u8>,
    route: Arc<Route>,
    /// The peer, or the client a trusted proxy's PROXY header named.
    remote: SocketAddr,
}

pub struct Server {
    engines: Engines,
    /// What each route was started with, read again by [`Server::reload`].
    specs: Vec<RouteSpec>,
    /// The routes now served: a reload swaps a route's entry; requests
    /// already routed keep the route they got.
    routes: RwLock<HashMap<String, Arc<Route>>>,
    /// Server-wide topics, shared by the routes of both worlds.
    topics: Arc<Topics>,
    limits: Arc<Limits>,
    next_id: AtomicU64,
    /// One permit per open connection (`--max-connections`).
    slots: Arc<Semaphore>,
    /// The most connections open at once since memory was last given back.
    peak: trim::Peak,
    /// One permit per 503 being served.
    refusals: Arc<Semaphore>,
    /// Turns true when the server shuts down; every connection task holds a receiver.
    shutdown: watch::Sender<bool>,
    /// Every open socket, swept for its keepalive alarm and nudged at shutdown.
    alarms: Arc<Alarms>,
    /// The same, for those who must not delay the shutdown (`/readyz`).
    shutting_down: Arc<AtomicBool>,
    /// Set when the listener serves `wss://` (`--tls-cert`).
    tls: Option<Arc<Tls>>,
    /// What each route was loaded from, and its versions still serving.
    versions: Versions,
    /// Held through a reload: a SIGHUP during a `--watch` reload waits,
    /// where two at once would each insert a version of the same route
    /// (one never retired, holding its room in the pool for good).
    reloading: std::sync::Mutex<()>,
    /// Event loops to run connections on (`--loops`).
    loops: usize,
}

impl Server {
    /// Compile (or load from `cache`) and link every route's component;
    /// fails naming the first bad one.
    pub fn new(specs: &[RouteSpec], limits: Limits, cache: Option<&Path>) -> Result<Self> {
        let mut inspected = Vec::with_capacity(specs.len());
        for spec in specs {
            if specs.iter().filter(|s| s.path == spec.path).count() > 1 {
                bail!("route {} is given twice", spec.path);
            }
            let component = component::inspect(&spec.source)?;
            if let Some(world) = &spec.world
                && world != component.world.name()
            {
                bail!(
                    "{}: route {} says world {world}, the component is of world {}",
                    spec.source,
                    spec.path,
                    component.world.name()
                );
            }
            inspected.push(component);
        }
        let worlds: Vec<_> = specs
            .iter()
            .zip(&inspected)
            .map(|(spec, inspected)| {
                let coro_tasks = spec
                    .limits
                    .as_ref()
                    .map_or(limits.coro_tasks, |l| l.coro_tasks);
                (inspected.world, coro_tasks)
            })
            .collect();
        // Every slot of the pool fits the largest route's guest.
        let mut pool = limits.clone();
        for route_limits in specs.iter().filter_map(|s| s.limits.as_deref()) {
            pool.guest_memory = pool.guest_memory.max(route_limits.guest_memory);
            pool.guest_table_elements = pool
                .guest_table_elements
                .max(route_limits.guest_table_elements);
        }
        let engines = Engines::new(&pool, cache, &worlds)?;
        let on_off = match engines.coro() {
            Some(_) => "on, for the coro routes alone",
            None => "off",
        };
        tracing::info!("concurrent guest calls: {on_off}");
        sandbox::start_epoch_ticker(engines.all());
        // The overdraft's reserve fits the largest message of any route.
        let largest = specs
            .iter()
            .filter_map(|spec| spec.limits.as_ref())
            .map(|l| l.max_message_size)
            .fold(limits.max_message_size, usize::max);
        crate::ws::budget::init(limits.max_in_flight, largest);
        let limits = Arc::new(limits);
        let topics = Topics::with_history_memory(limits.history_memory);
        let mut routes = HashMap::new();
        let versions = Versions::default();
        for (spec, inspected) in specs.iter().zip(&inspected) {
            let loaded = component::load(&engines, &spec.source, inspected)?;
            let route = new_route(spec, loaded, None, (&route_limits(spec, &limits), &topics));
            versions.loaded(&spec.path, inspected.fingerprint(), route.version());
            routes.insert(spec.path.clone(), Arc::new(route));
        }
        Ok(Server {
            engines,
            specs: specs.to_vec(),
            routes: RwLock::new(routes),
            topics,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            peak: trim::Peak::default(),
            refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
            shutdown: watch::channel(false).0,
            alarms: Arc::default(),
            shutting_down: Arc::default(),
            tls: None,
            limits,
            next_id: AtomicU64::new(1),
            versions,
            reloading: std::sync::Mutex::default(),
            loops: 1,
        })
    }

    /// Run connections on `n` event loops, the runtime `serve` runs on and
    /// `n - 1` threads (see [`loops`]); one unless set.
    pub fn with_loops(mut self, n: usize) -> Self {
        self.loops = n.max(1);
        self
    }

    /// Serve TLS (`wss://`, `https://`) instead of plain TCP.
    pub fn with_tls(mut self, tls: Arc<Tls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The server-wide topics (a cluster relays them).
    pub fn topics(&self) -> Arc<Topics> {
        self.topics.clone()
    }

    /// Give out connection ids from `first` on (a cluster node's range).
    /// Before serving.
    pub fn set_first_id(&self, first: u64) {
        self.next_id.store(first, Ordering::Relaxed);
    }

    /// Set the wasm pools' gauges from the engines (see [`crate::meters::pool`]).
    pub fn meter_pool(&self) {
        crate::meters::pool(self.engines.all());
        crate::meters::in_flight(crate::ws::budget::global().held());
    }

    /// Turns true when the server starts to shut down.
    pub fn shutting_down(&self) -> Arc<AtomicBool> {
        self.shutting_down.clone()
    }

    pub fn route(&self, path: &str) -> Option<Arc<Route>> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.get(path).cloned()
    }

    /// Load every route's component again (SIGHUP, `--watch`): new requests
    /// get the new version; open handler-world connections finish on the
    /// instance they have, and open event-world sockets stay with the
    /// route's old instance until they close (new sockets get a new one). A
    /// component that fails to load, or whose world changed, leaves its
    /// route as it was and the log says why. Returns how many were reloaded.
    pub fn reload(&self) -> usize {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let (mut reloaded, mut unchanged) = (0, 0);
        for spec in &self.specs {
            let Some(old) = self.route(&spec.path) else {
                continue;
            };
            match self.load_again(spec, &old) {
                Ok(None) => unchanged += 1,
                Ok(Some((route, fingerprint))) => {
                    if let Route::Events(route) = &route {
                        route.start();
                    }
                    self.versions
                        .loaded(&spec.path, fingerprint, route.version());
                    let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
                    routes.insert(spec.path.clone(), Arc::new(route));
                    drop(routes);
                    if let Route::Coro(old) = &*old {
                        old.retire();
                    }
                    reloaded += 1;
                }
                Err(e) => tracing::error!("route {} keeps its running component: {e:#}", spec.path),
            }
        }
        tracing::info!(
            "reloaded {reloaded} of {} routes in {} ms ({unchanged} unchanged)",
            self.specs.len(),
            started.elapsed().as_millis()
        );
        reloaded
    }

    /// `spec`'s component loaded again, unless its bytes did not change;
    /// refused when the pool has no room for another version of the route.
    fn load_again(&self, spec: &RouteSpec, old: &Route) -> Result<Option<(Route, u64)>> {
        let inspected = component::inspect(&spec.source)?;
        let fingerprint = inspected.fingerprint();
        if self.versions.unchanged(&spec.path, fingerprint) {
            return Ok(None);
        }
        if inspected.world.name() != old.world() {
            bail!(
                "{}: its world changed from {} to {} (restart wshost to change a route's world)",
                spec.source,
                old.world(),
                inspected.world.name()
            );
        }
        if let Some(room) = old.versions_room() {
            self.versions
                .room(&spec.path, room)
                .map_err(anyhow::Error::msg)?;
        }
        let loaded = component::load(&self.engines, &spec.source, &inspected)?;
        let limits = route_limits(spec, &self.limits);
        let route = new_route(spec, loaded, Some(old), (&limits, &self.topics));
        Ok(Some((route, fingerprint)))
    }

    /// Accept connections until `stop` resolves, then shut down gracefully:
    /// stop accepting, tell every open connection the server is going away
    /// (1001), and wait up to the shutdown timeout for their handlers.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        stop: impl Future<Output = ()>,
    ) -> Result<()> {
        // Ends on its own once the server and its connections are gone.
        let sweep = self.alarms.start_sweep();
        drop(sweep.context("starting the keepalive sweep")?);
        let loops = Loops::start(self.loops).context("starting the event loops")?;
        let loops = Arc::new(loops);
        tracing::info!("{} event loops", loops.len());
        for route in self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            if let Route::Events(route) = &**route {
                route.start();
            }
        }
        let trims = tokio::spawn({
            let server = self.clone();
            async move { trim::after_bursts(&server.peak, || server.open_now()).await }
        });
        let mut stop = std::pin::pin!(stop);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => break,
            };
            match accepted {
                Ok((stream, remote)) => self.clone().admit(stream, remote, &loops),
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        trims.abort();
        let open = self.open_now();
        tracing::info!("shutting down: {open} connections open");
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        self.alarms.shut_down();
        // Every connection's tasks hold receivers: all gone means all ended.
        let timeout = self.limits.shutdown_timeout;
        if tokio::time::timeout(timeout, self.shutdown.closed())
            .await
            .is_err()
        {
            let open = self.open_now();
            tracing::warn!("{open} connections still open after {timeout:?}; exiting anyway");
        }
        Ok(())
    }

    /// Connections open now.
    fn open_now(&self) -> usize {
        self.limits.max_connections - self.slots.available_permits()
    }

    /// Serve a new connection in its own task on the loop with the fewest
    /// open, or refuse it with 503 when `--max-connections` are open already.
    fn admit(self: Arc<Self>, tcp: TcpStream, remote: SocketAddr, loops: &Arc<Loops>) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "refused: {} connections open", self.limits.max_connections);
            meters::refused("capacity");
            let Ok(refusal) = self.refusals.clone().try_acquire_owned() else {
                return; // dropped: already serving MAX_REFUSALS 503s
            };
            let body = format!(
                "the server is at its limit of {} connections\n",
                self.limits.max_connections
            );
            let write_timeout = self.limits.write_timeout;
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + self.limits.handshake_timeout;
                if let Some((mut stream, _)) = self.open(tcp, remote, deadline).await {
                    let response = http::response(503, &[], body.as_bytes(), false);
                    http::refuse(&mut stream, &response, write_timeout).await;
                }
                drop(refusal);
            });
            return;
        };
        self.peak.saw(self.open_now());
        let shutdown = Shutdown {
            flag: self.shutdown.subscribe(),
            alarms: self.alarms.clone(),
        };
        let placed = loops.place();
        let (here, on) = (placed.here, placed.handle().clone());
        let slot = Slot {
            _permit: slot,
            placed,
            loops: loops.clone(),
        };
        if here {
            on.spawn(self.handle_connection(tcp, remote, shutdown, slot));
        } else {
            let serve = move |tcp| self.handle_connection(tcp, remote, shutdown, slot);
            loops::hand_over(tcp, &on, remote, serve);
        }
    }

    /// The connection's stream and its peer: the client a trusted proxy's
    /// PROXY header names (`--proxy-protocol`), else the TCP peer; on a TLS
    /// listener, after the TLS handshake. Each step within the handshake
    /// timeout; `None` if one failed.
    async fn open(
        &self,
        mut tcp: TcpStream,
        remote: SocketAddr,
        deadline: tokio::time::Instant,
    ) -> Option<(Stream, SocketAddr)> {
        let _ = tcp.set_nodelay(true);
        let limits = &self.limits;
        let mut peer = remote;
        if limits.proxy_protocol && limits.trusted_proxies.trusts(remote.ip()) {
            let read = proxy_protocol::read_source(&mut tcp);
            let read = tokio::time::timeout_at(deadline, read).await;
            match read.unwrap_or(Err(ProxyHeaderError::TimedOut)) {
                Ok(source) => peer = source.unwrap_or(remote),
                Err(e) => {
                    tracing::info!(%remote, "dropped: {e}");
                    meters::refused("proxy_header");
                    return None;
                }
            }
        }
        let Some(tls) = &self.tls else {
            return Some((Stream::Plain(tcp), peer));
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tls.accept(tcp, left).await {
            Ok(stream) => Some((stream, peer)),
            Err(e) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                meters::refused("tls");
                None
            }
        }
    }

    /// Read the request head and find its route; answers what it cannot
    /// serve (a bad head, no route) itself and returns `None`.
    async fn read_request(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
        shutdown: &mut Shutdown,
    ) -> Option<Arrived> {
        // One deadline for all that comes before the request: a PROXY
        // header, a TLS handshake and the head each took the whole timeout.
        let limits = &self.limits;
        let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
        let head = async {
            let (mut stream, remote) = self.open(tcp, remote, deadline).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let head = http::read_head(&mut stream, limits.max_head_size, left).await;
            let head = head.map_err(|e| match e {
                http::HeadError::Timeout(_) => http::HeadError::Timeout(limits.handshake_timeout),
                e => e,
            });
            Some((head, stream, remote))
        };
        let (head, mut stream, remote) = tokio::select! {
            head = head => head?,
            // A request still arriving at shutdown is not worth waiting for.
            _ = turned_true(&mut shutdown.flag) => return None,
        };
        let (head, early) = match head {
            Ok(read) => read,
            Err(e) => {
                tracing::debug!(%remote, "bad request: {e}");
                if let Some(status) = e.status() {
                    meters::refused(match status {
                        408 => "timeout",
                        431 => "too_large",
                        _ => "bad_request",
                    });
                    let body = format!("{e}\n");
                    let response = http::response(status, &[], body.as_bytes(), false);
                    http::refuse(&mut stream, &response, self.limits.write_timeout).await;
                }
                return None;
            }
        };
        let route = self.route(&head.path);
        let refused = match &route {
            None => Some((404, "no_route", format!("no route for {}\n", head.path))),
            Some(route)
                if head.wants_websocket()
                    && !route.limits().origin_allowed(head.header("origin")) =>
            {
                let origin = head.header("origin").unwrap_or_default();
                tracing::info!(%remote, origin, "WebSocket handshake refused: origin not allowed");
                Some((403, "origin", format!("origin {origin} is not allowed\n")))
            }
            Some(_) => None,
        };
        if let Some((status, reason, body)) = refused {
            tracing::debug!(%remote, path = head.path, status, "refused");
            meters::refused(reason);
            let response = http::response(status, &[], body.as_bytes(), head.method == "HEAD");
            http::refuse(&mut stream, &response, self.limits.write_timeout).await;
            return None;
        }
        Some(Arrived {
            stream,
            head,
            early,
            route: route?,
            remote,
        })
    }

    /// Serve one connection; `slot` (its `--max-connections` permit and its
    /// place on its loop) is held until it ends, in whichever task that is.
    async fn handle_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
        mut shutdown: Shutdown,
        mut slot: Slot,
    ) {
        let read = self.read_request(tcp, remote, &mut shutdown).await;
        let Some(Arrived {
            stream,
            head,
            early,
            route,
            remote,
        }) = read
        else {
            return;
        };
        // A plain event-world socket moves to the loop of its route's
        // instance (measured, both cores shared with the load: 0.91x the
        // messages a second when left on another loop).
        let home = match (&*route, &stream) {
            (Route::Events(route), Stream::Plain(_)) => route.home_elsewhere(),
            _ => None,
        };
        if let Some((_, thread)) = &home {
            slot.moved_to(*thread);
        }
        let slot = route.meters().opened(slot);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("conn", route = %route.path(), id);
        let request = Request {
            method: head.method.clone(),
            path: head.path.clone(),
            query: head.query.clone(),
            headers: head.headers.clone(),
            remote_addr: remote.to_string(),
        };
        // Each world goes on in a task of its own, sized for what it waits
        // in, and this one ends (see `event_socket::serve` for the events).
        match &*route {
            Route::Handler(route) => {
                // The socket's pump runs in the guest's task: read → guest
                // → write without waking another task.
                let side = Arc::new(Side::default());
                let conn = Conn::new(id, route.ctx.clone(), stream, head, early, shutdown)
                    .with_pump_beside(side.clone());
                let (server, route) = (self.clone(), route.clone());
                let run = move || server.run_handler(route, request, conn, slot);
                tokio::spawn(beside::run(run, side).instrument(span));
            }
            Route::Events(route) => {
                let (route, limits) = (route.clone(), route.limits.clone());
                let serve = move |stream| {
                    let accepted = Accepted {
                        id,
                        stream,
                        head,
                        early,
                        request,
                    };
                    event_socket::serve(route, limits, accepted, shutdown, slot).instrument(span)
                };
                match (home, stream) {
                    (Some((home, _)), Stream::Plain(tcp)) => {
                        loops::hand_over(tcp, &home, remote, move |tcp| serve(Stream::Plain(tcp)))
                    }
                    (_, stream) => serve(stream).await,
                }
            }
            Route::Coro(route) => {
                let mut stream = stream;
                let forwarded = head.headers_named(forwarded::FORWARDED_FOR);
                let client = self.limits.trusted_proxies.client(remote.ip(), forwarded);
                if route.refuses(client) {
                    crate::meters::refused("quarantine");
                    let body = b"this client crashed its handler; try again later\n";
                    let response = http::response(503, &[], body, head.method == "HEAD");
                    http::refuse(&mut stream, &response, route.ctx.limits.write_timeout).await;
                    return;
                }
                let conn = Conn::new(id, route.ctx.clone(), stream, head, early, shutdown);
                route.serve(Task {
                    id,
                    conn,
                    request,
                    slot,
                    client,
                });
            }
        }
    }

    /// A fresh, sandboxed store for one connection of `route`.
    fn store(&self, route: &HandlerRoute, conn: Conn) -> Store<HostState> {
        let limits = &route.ctx.limits;
        let mut store = Store::new(
            self.engines.plain(),
            HostState::new(route.path.clone(), conn, limits.limiter(), &limits.grants),
        );
        sandbox::sandbox(&mut store);
        store
    }

    /// Median time to create the store and instantiate `path`'s handler, over
    /// `rounds` instances (what `wshost check` reports). Each gets a real
    /// loopback socket, made outside the timing.
    pub async fn instantiate_time(&self, path: &str, rounds: usize) -> Result<Duration> {
        let route = self.route(path).context("no such route")?;
        let route = match &*route {
            Route::Handler(route) => route,
            Route::Events(route) => return route.instantiate_time(rounds).await,
            Route::Coro(route) => return route.instantiate_time(rounds).await,
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut times = Vec::with_capacity(rounds);
        for id in 0..rounds as u64 {
            let _client = TcpStream::connect(listener.local_addr()?).await?;
            let (stream, _) = listener.accept().await?;
            let head = http::RequestHead {
                method: "GET".into(),
                path: path.into(),
                query: String::new(),
                headers: Vec::new(),
                minor_version: 1,
            };
            let shutdown = Shutdown::never();
            let conn = Conn::new(
                id,
                route.ctx.clone(),
                Stream::Plain(stream),
                head,
                Vec::new(),
                shutdown,
            );
            let started = Instant::now();
            let mut store = self.store(route, conn);
            let instance = route.pre.instantiate_async(&mut store).await;
            times.push(started.elapsed());
            instance.map_err(anyhow::Error::from)?;
        }
        times.sort_unstable();
        Ok(times[times.len() / 2])
    }

    /// Instantiate `route`'s handler for one request and run it to the end;
    /// `slot` is the connection's `--max-connections` permit.
    async fn run_handler(
        self: Arc<Self>,
        route: Arc<HandlerRoute>,
        request: Request,
        conn: Conn,
        slot: Open,
    ) {
        let id = conn.id();
        let mut store = self.store(&route, conn);
        let started = Instant::now();
        let instance = route.pre.instantiate_async(&mut store).await;
        route.ctx.meters.instantiate.record(started.elapsed());
        let outcome = match instance {
            Ok(handler) => {
                match sandbox::guarded(|| handler.call_handle(&mut store, &request)).await {
                    Ok(Ok(())) => Outcome::Returned,
                    Ok(Err(why)) => {
                        if store.data().conn.refused_handshake() {
                            tracing::debug!(
                                "handler returned an error after a bad handshake: {why}"
                            );
                        } else {
                            tracing::warn!("handler returned an error: {why}");
                        }
                        Outcome::Failed(why)
                    }
                    Err(err) => Outcome::Failed(sandbox::failure(&err)),
                }
            }
            Err(e) => {
                tracing::error!("cannot instantiate the handler: {e:?}");
                Outcome::Failed("handler could not start".into())
            }
        };
        // Free the instance before lingering over the closing handshake.
        let conn = store.into_data().conn;
        conn.finish(outcome).await;
        tracing::debug!("connection {id} ended");
        drop(slot);
    }
}

/// A route for `spec`'s freshly loaded component; a reloaded handler-world
/// route keeps `old`'s hub, so a broadcast reaches the connections of both
/// versions.
fn new_route(
    spec: &RouteSpec,
    loaded: Loaded,
    old: Option<&Route>,
    (limits, topics): (&Arc<Limits>, &Arc<Topics>),
) -> Route {
    let path: Arc<str> = spec.path.as_str().into();
    // A handler or coro route's context: `old`'s hub when it is of the
    // same world (`kept`), else a new one.
    let context = |kept: Option<&RouteContext>| RouteContext {
        limits: limits.clone(),
        hub: kept.map_or_else(Hub::new, |old| old.hub.clone()),
        topics: topics.clone(),
        meters: RouteMeters::new(&path),
    };
    match loaded {
        Loaded::Handler(pre) => {
            let ctx = context(match old {
                Some(Route::Handler(old)) => Some(&old.ctx),
                _ => None,
            });
            Route::Handler(Arc::new(HandlerRoute { path, pre, ctx }))
        }
        Loaded::Events(pre) => {
            let engine = pre.instance_pre().engine().clone();
            let route = EventRoute::new(path, &engine, pre, limits.clone(), topics.clone());
            Route::Events(Arc::new(route))
        }
        Loaded::Coro(pre) => {
            let ctx = context(match old {
                Some(Route::Coro(old)) => Some(&old.ctx),
                _ => None,
            });
            let engine = pre.instance_pre().engine().clone();
            Route::Coro(CoroRoute::new(path, &engine, pre, ctx))
        }
    }
}

/// `spec`'s own limits, or the server's.
fn route_limits(spec: &RouteSpec, server: &Arc<Limits>) -> Arc<Limits> {
    match &spec.limits {
        Some(limits) => Arc::new((**limits).clone()),
        None => server.clone(),
    }
}
