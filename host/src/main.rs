use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use wshost::config_file::{self, ConfigFile, LimitsFile};
use wshost::tls::{Tls, TlsFiles};
use wshost::{Limits, RouteSpec, Server};

/// A WebSocket server whose handlers are WebAssembly components.
#[derive(Parser)]
#[command(name = "wshost", version)]
struct Cli {
    /// Log lines as text, or as JSON objects (one a line, the route and
    /// connection id as fields of the span) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and WebSocket requests with wasm handler components.
    Serve(Box<ServeArgs>),
    /// Check that components are wshost handlers; report their world
    /// (handler or events), size, compile time and instantiate time. With
    /// `--config`, check a whole config file: every route loads.
    Check {
        #[arg(required_unless_present = "config", value_name = "FILE.wasm")]
        files: Vec<PathBuf>,
        /// A config file to check whole.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a new handler project: its code (wshost's echo for the handler
    /// world, chat for the event world), the WIT contract, a build script
    /// and a README with the build and serve commands.
    New {
        /// The project's name; its folder unless `--dir` says otherwise.
        name: String,
        #[arg(long, value_enum)]
        lang: NewLang,
        #[arg(long, value_enum, default_value_t = NewWorld::Handler)]
        world: NewWorld,
        /// Where to write it (must not exist, or be empty) [default: ./NAME].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NewLang {
    Rust,
    Js,
    Python,
    C,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NewWorld {
    /// One instance per connection: straight-line upgrade, recv, push.
    Handler,
    /// One instance for all sockets of a route, called per event.
    Events,
}

/// Where compiled components are kept between runs.
#[derive(Parser)]
struct CacheArgs {
    /// Keep compiled components in DIR so a restart skips compiling them
    /// [default: $XDG_CACHE_HOME/wshost or ~/.cache/wshost].
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Compile every component at start-up; keep nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
}

impl CacheArgs {
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(default_cache_dir)
    }
}

/// `$XDG_CACHE_HOME/wshost`, else `$HOME/.cache/wshost`; none without either.
fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("wshost"))
}

#[derive(Parser)]
struct ServeArgs {
    /// Read settings and routes from this TOML file (see the README);
    /// flags given here override it, for every route.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9502")]
    listen: SocketAddr,

    /// Serve requests for exactly PATH with the component in FILE; repeatable.
    /// With none, the built-in demo: the seed's page at / and echo at /websocket.
    #[arg(long = "route", value_name = "PATH=FILE.wasm")]
    routes: Vec<RouteSpec>,

    /// Largest WebSocket message, received or pushed, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_size)]
    max_message_size: usize,

    /// Seconds a client may take to send its request head.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().head_timeout.as_secs_f64())]
    handshake_timeout: f64,

    /// Seconds the host waits for the peer's Close reply when it ends a connection.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().close_timeout.as_secs_f64())]
    close_timeout: f64,

    /// Messages (hub, topic, event-world sends) that may wait for one
    /// connection; a connection whose queue overflows is closed with 1008.
    #[arg(long, value_name = "MESSAGES", default_value_t = Limits::default().mailbox_capacity)]
    hub_queue: usize,

    /// Bytes of such messages that may wait for one connection (one
    /// message of any size always fits); past them it is closed with 1008.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().mailbox_bytes)]
    hub_queue_bytes: usize,

    /// Bytes waiting for one event-world socket past which a send reports
    /// `backed-up` (and `on-drain` follows once they are written).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().backpressure)]
    backpressure_limit: usize,

    /// Seconds a guest may compute without calling the host before it is stopped.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().guest_cpu.as_secs_f64())]
    guest_cpu_timeout: f64,

    /// Bytes of linear memory one guest instance may use.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().guest_memory)]
    guest_memory: usize,

    /// Connections served at once; past the cap new ones are answered 503.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    max_connections: usize,

    /// Tasks (connections) one coro-world instance serves at most; past
    /// them its route starts another instance.
    #[arg(long, value_name = "N", default_value_t = Limits::default().coro_tasks)]
    coro_tasks: usize,

    /// Seconds handlers get to return after SIGINT/SIGTERM before wshost exits.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().shutdown_timeout.as_secs_f64())]
    shutdown_timeout: f64,

    /// Seconds any one write (a message, a plain response, a Close frame, a
    /// 503) may wait for the client to read; past it the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().write_timeout.as_secs_f64())]
    write_timeout: f64,

    /// Reload a route's component when its file changes (as SIGHUP does
    /// for all): checked every half second.
    #[arg(long)]
    watch: bool,

    /// Serve `/metrics` (Prometheus), `/healthz` and `/readyz` on this
    /// address (keep it private: e.g. 127.0.0.1:9503); none by default.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,

    /// Seconds a socket may be quiet (nothing from the peer) before the host
    /// pings it; 0: never ping.
    #[arg(long, value_name = "SECS", default_value_t = secs(Limits::default().keepalive.ping_interval))]
    ping_interval: f64,

    /// Seconds of hearing nothing from the peer (not even a pong) after
    /// which its socket is dropped (a half-open connection); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = secs(Limits::default().keepalive.idle_timeout))]
    idle_timeout: f64,

    /// Bytes of large messages (over 8 KiB a frame) read from peers and not
    /// yet taken by their guests, all connections together; past it, such
    /// reads wait (small messages never do).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().in_flight)]
    max_in_flight: usize,

    /// Agree to permessage-deflate (RFC 7692) with clients that offer it:
    /// messages of 1 KiB or more are sent compressed.
    #[arg(long)]
    deflate: bool,

    /// Accept WebSocket handshakes only from this `Origin` (e.g.
    /// https://app.example.com); repeatable. Others get 403; a request
    /// without `Origin` (not a browser) is let through. Default: any origin.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,

    /// Trust this proxy (an address, or a network as 10.0.0.0/8) to name
    /// the client in `X-Forwarded-For`; repeatable. The host then keys what
    /// it decides about a client (the coro world's quarantine) on the
    /// rightmost address there that is not a trusted proxy. Default: none,
    /// the header is ignored.
    #[arg(long = "trusted-proxy", value_name = "ADDR[/BITS]")]
    trusted_proxies: Vec<String>,

    /// Connections from `--trusted-proxy` peers begin with a PROXY protocol
    /// header (v1 or v2, as HAProxy and AWS NLB send): it names the client,
    /// which guests then get as `remote-addr`. Such a connection without
    /// one is dropped; others are served as they come.
    #[arg(long)]
    proxy_protocol: bool,

    /// Serve TLS (`wss://`, `https://`) with the certificate chain in this
    /// PEM file (leaf first). It and the key are read again when they change.
    #[arg(long, value_name = "FILE.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Make topics and sends by connection id reach the other wshost
    /// processes using this Redis (e.g. redis://127.0.0.1:6379).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,

    /// Elements any one table of a guest instance may hold.
    #[arg(long, value_name = "ELEMENTS", default_value_t = Limits::default().guest_table_elements)]
    guest_table_elements: usize,

    #[command(flatten)]
    cache: CacheArgs,
}

fn main() -> std::process::ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Kept to the end of main: dropping it flushes what the log thread holds.
    let (stderr, _flush) = tracing_appender::non_blocking(std::io::stderr());
    let log = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(stderr);
    match cli.log_format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let result = match cli.command {
        Command::Serve(args) => {
            let given = matches
                .subcommand_matches("serve")
                .expect("the serve command");
            let explicit = |id: &str| given.value_source(id) == Some(ValueSource::CommandLine);
            serve(*args, explicit)
        }
        Command::New {
            name,
            lang,
            world,
            dir,
        } => new_project(&name, lang, world, dir),
        Command::Check { files, config } => match config {
            Some(config) => check_config(&config),
            None => files.iter().try_for_each(|file| check(file)),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wshost: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs, explicit: impl Fn(&str) -> bool) -> Result<()> {
    // SIGHUP's default action ends the process: held until the reload
    // handler is in place (loading a JS or Python component takes seconds).
    hangup_during_start_up::hold();
    // Debug builds only: a start-up as slow as a large component's, for
    // the test of a SIGHUP meanwhile.
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("WSHOST_TEST_SLOW_START_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let overrides = overrides(&args, &explicit)?;
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let limits = file.limits(&overrides)?;
    let mut routes = file.routes(&overrides)?;
    // A `--route` replaces the file's route of the same path (two
    // `--route`s of one path stay an error).
    routes.retain(|file| !args.routes.iter().any(|flag| flag.path == file.path));
    routes.extend(args.routes.iter().cloned());
    if routes.is_empty() {
        routes = wshost::demo::routes();
    }
    let listen = match file.listen {
        Some(listen) if !explicit("listen") => listen,
        _ => args.listen,
    };
    let admin = args.admin.or(file.admin);
    let watch = args.watch || file.watch.unwrap_or(false);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => file.tls_files(),
    };
    let tls = tls.map(Tls::load).transpose()?.map(Arc::new);
    let cluster = args.cluster.clone().or(file.cluster.clone());
    raise_open_files_limit();
    return_large_buffers();
    // Installed before the routes load: their counters register with it.
    let metrics = match admin {
        Some(_) => Some(wshost::meters::install().context("installing the metrics recorder")?),
        None => None,
    };
    let mut server = Server::new(&routes, limits, args.cache.dir().as_deref())?;
    if let Some(tls) = &tls {
        server = server.with_tls(tls.clone());
    }
    let server = Arc::new(server);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        if let (Some(admin), Some(metrics)) = (admin, metrics) {
            let admin = tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin} (--admin)"))?;
            tracing::info!("admin listening on http://{}", admin.local_addr()?);
            let pool = server.clone();
            let refresh: wshost::admin::Refresh = Arc::new(move || pool.meter_pool());
            let metrics = (metrics, refresh);
            tokio::spawn(wshost::admin::serve(admin, metrics, server.shutting_down()));
        }
        if let Some(url) = &cluster {
            let joined = wshost::cluster::Cluster::join(url, server.topics()).await?;
            server.set_first_id(joined.first_id());
        }
        let stop = shutdown_signal()?;
        reload_on_hangup(server.clone(), tls.clone())?;
        if hangup_during_start_up::came() {
            tracing::info!("SIGHUP during start-up: reloading the routes' components now");
            let server = server.clone();
            tokio::task::spawn_blocking(move || server.reload());
        }
        if let Some(tls) = &tls {
            tokio::spawn(tls.clone().watch());
        }
        if watch {
            tokio::spawn(reload_on_change(server.clone(), routes.clone()));
        }
        for route in &routes {
            tracing::info!("route {} -> {}", route.path, route.source);
        }
        // Tests and scripts wait for this line to learn the port.
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!("wshost listening on {scheme}://{addr}");
        std::io::stdout().flush()?;
        server.serve(listener, stop).await;
        Ok::<_, anyhow::Error>(())
    })?;
    // Handlers still running past --shutdown-timeout are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Raise the soft open-files limit to the hard one: every connection is a
/// file descriptor, and a soft limit of 1,024 (a common default) would
/// refuse connections long before `--max-connections`.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let soft = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
            tracing::info!("open files limit raised from {soft} to {}", limit.rlim_max);
        } else {
            tracing::warn!("open files limit is {soft}; it could not be raised");
        }
    }
}

/// Have glibc's malloc give every allocation of 1 MiB or more its own
/// mapping, returned to the system when freed. By default the threshold
/// rises to the largest block freed, so after a burst of large messages
/// their buffers stay in the heap for good (measured: 40 sockets echoing
/// 4 MiB each kept 21 MiB; with this, 5 MiB). Below it, up to 16 MiB freed
/// at the heap's top is kept for reuse rather than returned at once:
/// returning it made every 256 KiB message fault fresh pages in (echo of
/// 256 KiB at 64 connections: 0.83x native, 0.92x with this).
fn return_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets malloc tunables.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

fn new_project(name: &str, lang: NewLang, world: NewWorld, dir: Option<PathBuf>) -> Result<()> {
    use wshost::scaffold::{self, Lang, World};
    let lang = match lang {
        NewLang::Rust => Lang::Rust,
        NewLang::Js => Lang::Js,
        NewLang::Python => Lang::Python,
        NewLang::C => Lang::C,
    };
    let world = match world {
        NewWorld::Handler => World::Handler,
        NewWorld::Events => World::Events,
    };
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let written = scaffold::create(&dir, name, lang, world)?;
    for file in &written {
        println!("wrote {}", file.display());
    }
    println!(
        "\nnext:\n  {}/build.sh\n  wshost serve --route /ws={}/dist/{name}.wasm",
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// Instances timed per component by `check`.
const CHECK_ROUNDS: usize = 1000;

fn check(file: &Path) -> Result<()> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("{}: cannot read component file", file.display()))?
        .len();
    let route = RouteSpec {
        path: "/".into(),
        source: wshost::ComponentSource::File(file.into()),
        world: None,
        limits: None,
    };
    let routes = [route];
    let timed = |cache: Option<&Path>| {
        let started = Instant::now();
        let server = Server::new(&routes, Limits::default(), cache)?;
        anyhow::Ok((server, started.elapsed()))
    };
    // A cache of its own: the first load compiles whatever else is cached,
    // the second is a hit.
    // Private (0700) and unpredictably named: no other local user can
    // plant a compiled artifact there. Removed when dropped, whatever happened.
    let cache = tempfile::Builder::new()
        .prefix("wshost-check-")
        .tempdir()
        .context("creating a private directory for the compile cache")?;
    let cache = Some(cache.path());
    let (compiled, (server, cached)) =
        timed(cache).and_then(|(_, compiled)| Ok((compiled, timed(cache)?)))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let instantiate = runtime.block_on(server.instantiate_time("/", CHECK_ROUNDS))?;
    let world = server.route("/").map_or("?", |route| route.world());
    println!(
        "{}: a wshost handler; world {world}; {} KiB; compiled in {} ms (first start), loaded in {} ms (restart, from the compile cache); instantiates in {:.1} µs (median of {CHECK_ROUNDS})",
        file.display(),
        size / 1024,
        compiled.as_millis(),
        cached.as_millis(),
        instantiate.as_secs_f64() * 1e6
    );
    Ok(())
}

/// Load a whole config file as `serve` would: its settings and every
/// route's component.
fn check_config(path: &Path) -> Result<()> {
    let file = ConfigFile::load(path)?;
    let limits = file.limits(&LimitsFile::default())?;
    let routes = file.routes(&LimitsFile::default())?;
    anyhow::ensure!(!routes.is_empty(), "{}: no [[route]]", path.display());
    if let Some(url) = &file.cluster {
        wshost::cluster::Cluster::check_url(url)?;
        println!("cluster: {}", wshost::cluster::redacted(url));
    }
    if let Some(files) = file.tls_files() {
        Tls::load(files.clone())?;
        println!("tls: {} with {}", files.cert.display(), files.key.display());
    }
    let server = Server::new(&routes, limits, None)?;
    for route in &routes {
        let world = server.route(&route.path).map_or("?", |r| r.world());
        println!("route {}: {} (world {world})", route.path, route.source);
    }
    println!(
        "{}: a valid wshost config; {} routes load",
        path.display(),
        routes.len()
    );
    Ok(())
}

/// A default shown in `--help`: 0 for "never".
fn secs(duration: Option<Duration>) -> f64 {
    duration.map_or(0.0, |d| d.as_secs_f64())
}

/// The limits given on the command line (not left at their defaults):
/// they override the config file, for every route.
fn overrides(args: &ServeArgs, given: &impl Fn(&str) -> bool) -> Result<LimitsFile> {
    let origins = args
        .allowed_origins
        .iter()
        .map(|o| config_file::origin(o).context("--allowed-origin"))
        .collect::<Result<Vec<_>>>()?;
    Ok(LimitsFile {
        max_message_size: given("max_message_size").then_some(args.max_message_size),
        handshake_timeout: given("handshake_timeout").then_some(args.handshake_timeout),
        close_timeout: given("close_timeout").then_some(args.close_timeout),
        hub_queue: given("hub_queue").then_some(args.hub_queue),
        hub_queue_bytes: given("hub_queue_bytes").then_some(args.hub_queue_bytes),
        backpressure_limit: given("backpressure_limit").then_some(args.backpressure_limit),
        guest_cpu_timeout: given("guest_cpu_timeout").then_some(args.guest_cpu_timeout),
        guest_memory: given("guest_memory").then_some(args.guest_memory),
        guest_table_elements: given("guest_table_elements").then_some(args.guest_table_elements),
        max_connections: given("max_connections").then_some(args.max_connections),
        coro_tasks: given("coro_tasks").then_some(args.coro_tasks),
        shutdown_timeout: given("shutdown_timeout").then_some(args.shutdown_timeout),
        write_timeout: given("write_timeout").then_some(args.write_timeout),
        ping_interval: given("ping_interval").then_some(args.ping_interval),
        idle_timeout: given("idle_timeout").then_some(args.idle_timeout),
        allowed_origins: given("allowed_origins").then_some(origins),
        deflate: given("deflate").then_some(args.deflate),
        max_in_flight: given("max_in_flight").then_some(args.max_in_flight),
        trusted_proxies: given("trusted_proxies").then(|| args.trusted_proxies.clone()),
        proxy_protocol: given("proxy_protocol").then_some(args.proxy_protocol),
    })
}

/// Reload every route's component, and the TLS certificate, on each SIGHUP.
/// A SIGHUP before the reload handler exists is noted, not fatal.
mod hangup_during_start_up {
    use std::sync::atomic::{AtomicBool, Ordering};

    static CAME: AtomicBool = AtomicBool::new(false);

    extern "C" fn note(_: libc::c_int) {
        CAME.store(true, Ordering::SeqCst);
    }

    /// Note SIGHUPs instead of dying of them (tokio's handler, installed
    /// later, takes over).
    pub fn hold() {
        let note: extern "C" fn(libc::c_int) = note;
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(libc::SIGHUP, note as libc::sighandler_t) };
    }

    /// Whether one came before [`super::reload_on_hangup`] took over.
    pub fn came() -> bool {
        CAME.load(Ordering::SeqCst)
    }
}

fn reload_on_hangup(server: Arc<Server>, tls: Option<Arc<Tls>>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the routes' components");
            let server = server.clone();
            if let Some(tls) = &tls {
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload()).await;
            }
            // Compiling is blocking work: off the connections' threads.
            let _ = tokio::task::spawn_blocking(move || server.reload()).await;
        }
    });
    Ok(())
}

/// Reload when a route's component file changes (`--watch`).
async fn reload_on_change(server: Arc<Server>, routes: Vec<RouteSpec>) {
    let stamps = || {
        routes
            .iter()
            .filter_map(|route| match &route.source {
                wshost::ComponentSource::File(path) => {
                    std::fs::metadata(path).and_then(|m| m.modified()).ok()
                }
                wshost::ComponentSource::Builtin { .. } => None,
            })
            .collect::<Vec<_>>()
    };
    let mut seen = stamps();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = stamps();
        if now != seen {
            seen = now;
            tracing::info!("a component file changed: reloading");
            let server = server.clone();
            let _ = tokio::task::spawn_blocking(move || server.reload()).await;
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    })
}
