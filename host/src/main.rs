//! The `wshost` command: `serve` (flags and the config file merged by
//! `wshost-config`, signals, reloads), `check` (a component, or a whole
//! config file, loaded as `serve` would) and `new` (a project to start from).

use anyhow::{Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use wshost::Server;
use wshost::net::tls::Tls;
use wshost_config::{ComponentSource, ConfigFile, Limits, LimitsFile, RouteSpec, TlsFiles};

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
    /// (handler, events or coro), size, compile time and instantiate time. With
    /// `--config`, check a whole config file: every route loads.
    Check {
        #[arg(required_unless_present = "config", value_name = "FILE.wasm")]
        files: Vec<PathBuf>,
        /// A config file to check whole.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Make a new handler project: its code (wshost's echo for the handler
    /// world, chat for the event world, coro-echo for the coro world), the
    /// WIT contract, a build script and a README with the build and serve
    /// commands.
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
    /// TypeScript on the `@wshost/guest` SDK.
    Ts,
    /// JavaScript on the `@wshost/guest` SDK (type-checked all the same).
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
    /// Straight-line handlers as async tasks of one instance (Rust and
    /// Python).
    Coro,
}

/// Where compiled components are kept between runs: `cache_dir`, else the
/// default; none with `no_cache`.
fn cache_dir(settings: &wshost_config::ServerSettings) -> Option<PathBuf> {
    if settings.no_cache {
        return None;
    }
    settings.cache_dir.clone().or_else(default_cache_dir)
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

/// `serve`'s flags: its settings (defined, with their config keys, in
/// `wshost-config`; each `None` unless given, so that a flag overrides the
/// file only when given), the file, routes and TLS.
#[derive(Parser)]
struct ServeArgs {
    /// Read settings and routes from this TOML file (see docs/src/settings.md);
    /// flags given here override it, for every route.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Serve requests for exactly PATH with the component in FILE; repeatable.
    /// With none, the built-in demo: the seed's page at / and echo at /websocket.
    #[arg(long = "route", value_name = "PATH=FILE.wasm")]
    routes: Vec<RouteSpec>,

    /// Serve TLS (`wss://`, `https://`) with the certificate chain in this
    /// PEM file (leaf first). It and the key are read again when they change.
    #[arg(long, value_name = "FILE.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    #[command(flatten)]
    server: ConfigFile,

    #[command(flatten)]
    limits: LimitsFile,
}

/// The command line, each setting's help ending with its default.
fn command() -> clap::Command {
    Cli::command().mut_subcommand("serve", |serve| {
        LimitsFile::document(ConfigFile::document(serve))
    })
}

fn main() -> std::process::ExitCode {
    let matches = command().get_matches();
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
        Command::Serve(args) => serve(*args),
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

fn serve(args: ServeArgs) -> Result<()> {
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
    let overrides = &args.limits;
    let file = match &args.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let limits = file.limits(overrides)?;
    let settings = file.server(&args.server)?;
    let history = file.history()?;
    let presence = file.presence()?;
    let mut routes = file.routes(overrides)?;
    // A `--route` replaces the file's route of the same path (two
    // `--route`s of one path stay an error).
    routes.retain(|file| !args.routes.iter().any(|flag| flag.path == file.path));
    routes.extend(args.routes.iter().cloned());
    if routes.is_empty() {
        routes = wshost::server::demo::routes();
    }
    let (listen, admin, watch) = (settings.listen, settings.admin, settings.watch);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => file.tls_files(),
    };
    let tls = tls.map(Tls::load).transpose()?.map(Arc::new);
    let cluster = settings.cluster.clone();
    raise_open_files_limit();
    return_large_buffers();
    // Installed before the routes load: their counters register with it.
    let metrics = match admin {
        Some(_) => Some(wshost::meters::install().context("installing the metrics recorder")?),
        None => None,
    };
    let mut server = Server::new(&routes, limits, cache_dir(&settings).as_deref())?;
    server.topics().history().set_rules(history);
    server.topics().presence().set_rules(presence);
    if let Some(tls) = &tls {
        server = server.with_tls(tls.clone());
    }
    let loops = settings.loops.unwrap_or_else(cores);
    let server = Arc::new(server.with_loops(loops));
    // Loop 0: the others are started by `serve` (see `server::loops`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
            let refresh: wshost::ops::admin::Refresh = Arc::new(move || pool.meter_pool());
            let metrics = (metrics, refresh);
            tokio::spawn(wshost::ops::admin::serve(
                admin,
                metrics,
                server.shutting_down(),
            ));
        }
        if let Some(url) = &cluster {
            let joined = wshost::pubsub::cluster::Cluster::join(url, server.topics()).await?;
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
        server.serve(listener, stop).await
    })?;
    // Handlers still running past --shutdown-timeout are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// The cores this process may run on (its CPU affinity, e.g. `taskset`).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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
    use wshost::ops::scaffold::{self, Lang, World};
    let lang = match lang {
        NewLang::Rust => Lang::Rust,
        NewLang::Ts => Lang::Ts,
        NewLang::Js => Lang::Js,
        NewLang::Python => Lang::Python,
        NewLang::C => Lang::C,
    };
    let world = match world {
        NewWorld::Handler => World::Handler,
        NewWorld::Events => World::Events,
        NewWorld::Coro => World::Coro,
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
        source: ComponentSource::File(file.into()),
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
    let private = tempfile::Builder::new()
        .prefix("wshost-check-")
        .tempdir()
        .context("creating a private directory for the compile cache")?;
    let cache = Some(private.path());
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
    // What was compiled, where `serve` (with the default cache and limits)
    // looks for it, so it starts at once.
    match default_cache_dir() {
        Some(into) => match wshost::server::component::keep_compiled(private.path(), &into) {
            Ok(_) => println!("compiled code kept in {} for `serve`", into.display()),
            Err(e) => eprintln!(
                "wshost: compiled code not kept in {}: {e:#}",
                into.display()
            ),
        },
        None => eprintln!("wshost: no HOME or XDG_CACHE_HOME: compiled code not kept for `serve`"),
    }
    Ok(())
}

/// Load a whole config file as `serve` would: its settings and every
/// route's component.
fn check_config(path: &Path) -> Result<()> {
    let file = ConfigFile::load(path)?;
    file.server(&ConfigFile::default())?;
    let limits = file.limits(&LimitsFile::default())?;
    let routes = file.routes(&LimitsFile::default())?;
    anyhow::ensure!(!routes.is_empty(), "{}: no [[route]]", path.display());
    let history = file.history()?;
    if !history.is_empty() {
        println!("history: {} [[history]] entries", history.len());
    }
    let presence = file.presence()?;
    if !presence.is_empty() {
        println!("presence: {} [[presence]] entries", presence.len());
    }
    if let Some(url) = &file.cluster {
        wshost::pubsub::cluster::Cluster::check_url(url)?;
        println!("cluster: {}", wshost::pubsub::cluster::redacted(url));
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
                ComponentSource::File(path) => {
                    std::fs::metadata(path).and_then(|m| m.modified()).ok()
                }
                ComponentSource::Builtin { .. } => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    /// Every `serve` flag is a setting of the config file, with its line in
    /// the reference (docs/src/settings.md); the few that are not settings
    /// name what they are in the file, and the reference says it too.
    #[test]
    fn every_serve_flag_has_a_config_key_and_a_reference_entry() {
        let reference = include_str!("../../docs/src/settings.md");
        let settings: Vec<_> = (ConfigFile::settings().into_iter())
            .chain(LimitsFile::settings())
            .collect();
        // Not settings: what the file has instead.
        let instead = [
            ("config", None),
            ("route", Some("[[route]]")),
            ("tls-cert", Some("[tls]")),
            ("tls-key", Some("[tls]")),
            // Global: how any command logs, not how a server serves.
            ("log-format", None),
        ];
        let command = command();
        let serve = command.find_subcommand("serve").unwrap();
        let mut flags = 0;
        for arg in serve.get_arguments() {
            let Some(flag) = arg.get_long().filter(|f| *f != "help") else {
                continue;
            };
            flags += 1;
            if let Some((_, file)) = instead.iter().find(|(f, _)| *f == flag) {
                let entry = file.unwrap_or("");
                assert!(
                    reference.contains(entry),
                    "{flag}: {entry} not in the reference"
                );
                continue;
            }
            let setting = settings.iter().find(|s| s.flag == flag);
            let setting = setting.unwrap_or_else(|| panic!("--{flag} is no setting"));
            let row = format!("| `{}` | `--{flag}", setting.key);
            assert!(
                reference.contains(&row),
                "--{flag}: no row in the reference"
            );
            // A key the file reads: the setting's table takes it.
            let table = match LimitsFile::settings().iter().any(|s| s.flag == flag) {
                true => "[limits]\n",
                false => "",
            };
            let text = format!("{table}{} = {}", setting.key, sample(setting));
            let read = toml::from_str::<ConfigFile>(&text);
            assert!(read.is_ok(), "{text}: {}", read.unwrap_err());
        }
        assert!(flags > 25, "only {flags} flags seen");
    }

    /// A value of `setting`'s kind, as the file writes it.
    fn sample(setting: &wshost_config::Setting) -> &'static str {
        match setting.unit.as_str() {
            "" => "true",
            "ADDR" => "\"127.0.0.1:1\"",
            "URL" | "DIR" => "\"x\"",
            "ORIGIN" | "ADDR[/BITS]" => "[]",
            _ => "1",
        }
    }
}
