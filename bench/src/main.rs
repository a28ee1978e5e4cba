//! `wshost-bench`: the same loads against a native tokio-tungstenite server
//! (the ceiling), wshost with the `mirror` and `broadcast` guests (handler
//! world) and with `event_mirror` and `chat` (event world), and the peers
//! present on this machine (Bun, Node `ws`); one table of medians over
//! interleaved rounds, with each round's ratio to the first column (native,
//! or the first server `--servers` names). `native loop` and `native tasks`
//! (`floor.rs`, run when named) are the floor without wasm.

mod cluster;
mod deflate;
mod floor;
mod languages;
mod load;
mod native;
mod pending;
mod raw;
mod report;
mod sdk;
mod servers;
mod tls;

use anyhow::Result;
use clap::{Parser, Subcommand};
use report::{Better, Report};
use servers::{Kind, Server};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "wshost-bench")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Interleaved rounds; each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Seconds each echo load runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,

    /// Idle connections held open for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,

    /// A fast, small run to check the benchmark itself works.
    #[arg(long)]
    quick: bool,

    /// Loads to run: echo, setup, broadcast, idle (default: all).
    #[arg(long, value_delimiter = ',')]
    loads: Vec<String>,

    /// Echo connection counts (default: 1, 64, 1000).
    #[arg(long, value_delimiter = ',')]
    conns: Vec<usize>,

    /// Broadcast fan-outs: connections each message reaches (default: 1000, 10000).
    #[arg(long, value_delimiter = ',')]
    fanout: Vec<usize>,

    /// Deliveries per broadcast load (each message reaches every one of
    /// the fan-out's connections; at least 20 messages). The default, a
    /// burst, is mostly how fast the first messages reach everyone;
    /// 3,000,000 measures a sustained fan-out. A server evicts a subscriber
    /// that falls more than its queue (`--hub-queue`, 1,024 messages) behind,
    /// and the load then fails with "broadcast broke".
    #[arg(long, default_value_t = 200_000)]
    deliveries: usize,

    /// Echo message sizes in bytes (default: 32, 4096).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,

    /// Skip the peers (Bun, Node); without `--servers`, native and wshost
    /// always run.
    #[arg(long)]
    no_peers: bool,

    /// Only these servers (by the table's column names, e.g. "wshost events");
    /// the first is the baseline.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,

    /// Pin every server to the first N cores and the load to the others
    /// (e.g. `--pin 1` on 2 cores: a server's figure is what one core does).
    #[arg(long, value_name = "N")]
    pin: Option<usize>,
}

impl Cli {
    fn runs(&self, load: &str) -> bool {
        self.loads.is_empty() || self.loads.iter().any(|l| l == load)
    }
}

/// A feature on and off, compared.
#[derive(clap::Args)]
struct Compare {
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Idle sockets for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

/// Guests compared across builds (languages, or SDK against raw bindings).
#[derive(clap::Args)]
struct Guests {
    /// Rounds; each figure is the median over them.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Idle connections held open on the handler world's echo.
    #[arg(long, default_value_t = 200)]
    idle: usize,
    /// Idle sockets held open on `chat` (event world) and the coro echo.
    #[arg(long, default_value_t = 10_000)]
    event_idle: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the native tokio-tungstenite baseline (used by the benchmark itself).
    NativeServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Serve the same routes on wshost's protocol crate without wasm, from
    /// one epoll loop owning its sockets (`--servers "native loop"`).
    NativeLoopServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// The same from a tokio task per socket (`--servers "native tasks"`).
    NativeTasksServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// What permessage-deflate costs: wshost with and without `--deflate`,
    /// per message (echo of JSON text) and per idle socket.
    Deflate(Compare),
    /// What `--cluster` and topic history cost: one publisher to N
    /// subscribers on one process, the same with history kept, then over two
    /// processes on one Redis (redis-server needed).
    Cluster {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Subscribers of the published topic.
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
    },
    /// What TLS costs: wshost serving `ws://` and `wss://`, per message
    /// (echo), per handshake and per idle socket.
    Tls(Compare),
    /// What tasks waiting in a coro instance cost the others: echo and a
    /// burst with P sockets idle, instances capped at 2,000 tasks vs not.
    Pending {
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Idle sockets on the route, in steps (ascending).
        #[arg(long, value_delimiter = ',', default_values_t = [0, 2_000, 10_000])]
        pending: Vec<usize>,
        /// Seconds each echo load runs.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Compare the echo guest across languages (Rust, JS, Python, C): size,
    /// compile and instantiate time, idle RSS per connection; ratios to Rust.
    Languages(Guests),
    /// What the JavaScript and Python SDKs cost against the raw-bindings
    /// guests they replaced: size, instantiate time, idle RSS per
    /// connection (and PSS for the handler world's echo), events/s; ratios
    /// to the raw guest.
    Sdk {
        #[command(flatten)]
        guests: Guests,
        /// Languages to measure, comma-separated: js, python.
        #[arg(long, value_delimiter = ',', default_values_t = sdk::LANGS.map(String::from))]
        langs: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Before the runtime: its threads inherit the load's cores.
    if let Some(cores) = cli.pin {
        servers::pin::split(cores)?;
        println!("servers pinned to the first {cores} core(s), the load to the others");
    }
    // The floor's servers run on this one thread, without the bench's runtime.
    match cli.command {
        Some(Command::NativeLoopServer { listen }) => return floor::serve_loop(listen),
        Some(Command::NativeTasksServer { listen }) => return floor::serve_tasks(listen),
        _ => {}
    }
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::NativeServer { listen }) => runtime.block_on(native::serve(listen)),
        Some(Command::NativeLoopServer { .. } | Command::NativeTasksServer { .. }) => {
            unreachable!("served above")
        }
        Some(Command::Deflate(c)) => {
            raise_fd_limit();
            runtime.block_on(deflate::run(c.rounds, c.idle, c.seconds))
        }
        Some(Command::Cluster {
            rounds,
            subscribers,
        }) => {
            raise_fd_limit();
            runtime.block_on(cluster::run(rounds, subscribers))
        }
        Some(Command::Tls(c)) => {
            raise_fd_limit();
            runtime.block_on(tls::run(c.rounds, c.idle, c.seconds))
        }
        Some(Command::Pending {
            rounds,
            pending,
            seconds,
        }) => {
            raise_fd_limit();
            runtime.block_on(pending::run(rounds, &pending, seconds))
        }
        Some(Command::Languages(g)) => {
            raise_fd_limit();
            runtime.block_on(languages::run(g.rounds, g.idle, g.event_idle))
        }
        Some(Command::Sdk { guests: g, langs }) => {
            raise_fd_limit();
            runtime.block_on(sdk::run(&langs, g.rounds, g.idle, g.event_idle))
        }
        None => {
            raise_fd_limit();
            raise_map_count(cli.idle);
            runtime.block_on(run(cli))
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut kinds = Vec::new();
    let peers: &[Kind] = if cli.no_peers {
        &[]
    } else {
        &[Kind::Bun, Kind::Node]
    };
    let base: &[Kind] = if std::env::var_os(servers::BASE_VAR).is_some() {
        &[Kind::Base, Kind::BaseEvents, Kind::BaseCoro]
    } else {
        &[]
    };
    for &kind in [
        Kind::Native,
        Kind::Wshost,
        Kind::WshostEvents,
        Kind::WshostCoro,
    ]
    .iter()
    .chain(base)
    .chain(peers)
    .chain(&[Kind::NativeLoop, Kind::NativeTasks])
    {
        match kind.available() {
            Ok(()) => kinds.push(kind),
            Err(why) => println!("skipping {}: {why}", kind.name()),
        }
    }
    if cli.servers.is_empty() {
        // Named only: the default run's columns stay as they were.
        kinds.retain(|&k| !matches!(k, Kind::NativeLoop | Kind::NativeTasks));
        anyhow::ensure!(
            kinds.starts_with(&[Kind::Native, Kind::Wshost, Kind::WshostEvents]),
            "native and wshost must run"
        );
    } else {
        kinds.retain(|k| cli.servers.iter().any(|s| s == k.name()));
        // In the order named: the first is the baseline.
        kinds.sort_by_key(|k| cli.servers.iter().position(|s| s == k.name()));
        anyhow::ensure!(!kinds.is_empty(), "no server named in --servers runs here");
    }
    let (rounds, seconds, idle, mut conns, mut fanouts) = if cli.quick {
        (1, 0.3, 200, vec![1, 16], vec![50])
    } else {
        (
            cli.rounds,
            cli.seconds,
            cli.idle,
            vec![1, 64, 1000],
            vec![1000, 10_000],
        )
    };
    if !cli.fanout.is_empty() {
        fanouts = cli.fanout.clone();
    }
    if !cli.conns.is_empty() {
        conns = cli.conns.clone();
    }
    let sizes = if cli.sizes.is_empty() {
        vec![32, 4096]
    } else {
        cli.sizes.clone()
    };
    let duration = Duration::from_secs_f64(seconds);
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let mut report = Report::new(&names);

    let mut servers = Vec::new();
    for &kind in &kinds {
        servers.push(Server::start(kind).await?);
    }
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        // Each round starts one server later, so that none always runs
        // first (after the load's own warm-up) or right after a given other.
        let turn: Vec<&Server> = servers
            .iter()
            .cycle()
            .skip((round - 1) % servers.len())
            .take(servers.len())
            .collect();
        for &size in sizes.iter().filter(|_| cli.runs("echo")) {
            for &n in &conns {
                for &server in &turn {
                    let echo = load::echo(server, n, size, duration).await?;
                    server.settle().await?;
                    let figure = format!("echo {size} B, {n} conn");
                    // Each round's figure as it comes: the table gives medians.
                    eprintln!(
                        "  {}: {figure}: {:.0} msg/s",
                        server.kind.name(),
                        echo.msgs_per_sec
                    );
                    report.add(
                        &format!("{figure}: msg/s"),
                        Better::Higher,
                        server.kind.name(),
                        echo.msgs_per_sec,
                    );
                    report.add(
                        &format!("{figure}: p50 µs"),
                        Better::Lower,
                        server.kind.name(),
                        micros(echo.p50),
                    );
                    report.add(
                        &format!("{figure}: p99 µs"),
                        Better::Lower,
                        server.kind.name(),
                        micros(echo.p99),
                    );
                    report.add(
                        &format!("{figure}: server CPU µs/msg"),
                        Better::Lower,
                        server.kind.name(),
                        micros(echo.cpu_per_msg),
                    );
                    // Neither better nor worse alone: with msg/s, how a
                    // server's rate grows with the cores it is given.
                    report.add(
                        &format!("{figure}: server cores busy"),
                        Better::Lower,
                        server.kind.name(),
                        echo.cores_busy,
                    );
                }
            }
        }
        for &server in turn.iter().filter(|_| cli.runs("setup")) {
            let count = if cli.quick { 100 } else { 2000 };
            let rate = load::setup_rate(server.addr, count, 16).await?;
            server.settle().await?;
            report.add(
                "connection set-up: conn/s",
                Better::Higher,
                server.kind.name(),
                rate,
            );
        }
        if cli.runs("setup") && kinds.contains(&Kind::Wshost) {
            let micros = servers::wshost_instantiate_micros().await?;
            report.add(
                "instantiate alone: µs",
                Better::Lower,
                Kind::Wshost.name(),
                micros,
            );
        }
        for &fanout in fanouts.iter().filter(|_| cli.runs("broadcast")) {
            // 200,000 deliveries (at least 20 messages) per server and round
            // by default: long enough to measure, short of any queue's limit.
            let messages = (cli.deliveries / fanout).max(20);
            for &server in &turn {
                let rate = load::broadcast(server.addr, fanout, messages).await?;
                server.settle().await?;
                let figure = format!("broadcast to {fanout}: deliveries/s");
                report.add(&figure, Better::Higher, server.kind.name(), rate);
            }
        }
        for &kind in kinds.iter().filter(|_| cli.runs("idle")) {
            let (per_conn, total) = idle_memory(kind, idle).await?;
            let figure = format!("idle RSS at {idle} conn: KiB/conn");
            report.add(&figure, Better::Lower, kind.name(), per_conn / 1024.0);
            let figure = format!("RSS with {idle} idle conn: MiB");
            report.add(
                &figure,
                Better::Lower,
                kind.name(),
                total / (1 << 20) as f64,
            );
        }
    }
    drop(servers);
    report.print();
    Ok(())
}

/// RSS growth per open idle connection, and the whole RSS with them open,
/// on a fresh server.
async fn idle_memory(kind: Kind, conns: usize) -> Result<(f64, f64)> {
    let server = Server::start_sized(kind, conns + 100).await?;
    let growth = load::idle_growth(&server, "/mirror", conns).await?;
    Ok((growth.rss, growth.rss_after as f64))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// wshost's instance pool costs two memory mappings per `--max-connections`
/// slot (an async stack and its guard page) and about four per open
/// connection; the kernel's default cap of 65,530 mappings is too low for
/// 10,000 idle connections on a 20,000-slot pool. Raise it when we may.
fn raise_map_count(idle: usize) {
    const PATH: &str = "/proc/sys/vm/max_map_count";
    let needed = 2 * 20_000.max(idle) + 5 * idle + 10_000;
    let current: usize = std::fs::read_to_string(PATH)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if current < needed && std::fs::write(PATH, needed.to_string()).is_err() {
        println!(
            "notice: vm.max_map_count is {current}; wshost may refuse connections past ~{} idle \
             (run `sysctl -w vm.max_map_count={needed}` as root)",
            current.saturating_sub(40_000) / 4
        );
    }
}

/// Thousands of connections need thousands of descriptors, here and in the
/// servers (which inherit the limit): raise the soft limit to the hard one,
/// and both to 262,144 when allowed (as root).
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            // As root the hard limit itself may rise: 50,000 idle sockets
            // need that many descriptors here and in the server.
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max.max(1 << 18),
                rlim_max: limit.rlim_max.max(1 << 18),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}
