//! The servers under load, each a child process serving `/mirror` and
//! `/broadcast` on a free port of 127.0.0.1. wshost runs twice: with the
//! handler-world guests and with their event-world twins.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Where the workspace is, for the wshost binary, the guests and the peers.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The ceiling: tokio-tungstenite, built into this binary.
    Native,
    /// The handler world: `mirror` and `broadcast`, an instance per connection.
    Wshost,
    /// The event world: `event_mirror` and `chat`, one instance per route.
    WshostEvents,
    /// The coro world: `coro_mirror` and `coro_chat` (a topic, as the event
    /// world's `chat`), tasks of a few instances.
    WshostCoro,
    /// The three worlds again, served by the wshost binary that
    /// `WSHOST_BENCH_BASE` names (a build of another commit): a change's
    /// before and after, measured in the same run.
    Base,
    BaseEvents,
    BaseCoro,
    Bun,
    Node,
    /// The floor without wasm (`floor.rs`), run only when `--servers` names
    /// it: one epoll loop owning its sockets, and a tokio task per socket.
    NativeLoop,
    NativeTasks,
}

/// The variable naming the base binary ([`Kind::Base`]).
pub const BASE_VAR: &str = "WSHOST_BENCH_BASE";

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Wshost => "wshost",
            Kind::WshostEvents => "wshost events",
            Kind::WshostCoro => "wshost coro",
            Kind::Base => "base",
            Kind::BaseEvents => "base events",
            Kind::BaseCoro => "base coro",
            Kind::Bun => "bun",
            Kind::Node => "node ws",
            Kind::NativeLoop => "native loop",
            Kind::NativeTasks => "native tasks",
        }
    }

    /// The command that starts this server, or why it cannot run here.
    fn command(self) -> Result<Command, String> {
        self.command_for(20_000)
    }

    /// The command that starts this server with room for `conns`
    /// connections (wshost's `--max-connections`; the others have no cap).
    fn command_for(self, conns: usize) -> Result<Command, String> {
        let root = Path::new(ROOT);
        let peers = root.join("bench/peers");
        let cmd = match self {
            Kind::Native | Kind::NativeLoop | Kind::NativeTasks => {
                let mut cmd = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
                let serve = match self {
                    Kind::Native => "native-server",
                    Kind::NativeLoop => "native-loop-server",
                    _ => "native-tasks-server",
                };
                cmd.args([serve, "--listen", "127.0.0.1:0"]);
                cmd
            }
            Kind::Wshost
            | Kind::WshostEvents
            | Kind::WshostCoro
            | Kind::Base
            | Kind::BaseEvents
            | Kind::BaseCoro => {
                let guests = root.join("target/guests/wasm32-wasip2/guest");
                let (mirror, broadcast) = match self {
                    Kind::Wshost | Kind::Base => ("mirror", "broadcast"),
                    Kind::WshostEvents | Kind::BaseEvents => ("event_mirror", "chat"),
                    _ => ("coro_mirror", "coro_chat"),
                };
                let binary = match self {
                    Kind::Base | Kind::BaseEvents | Kind::BaseCoro => {
                        let base = std::env::var_os(BASE_VAR)
                            .ok_or_else(|| format!("{BASE_VAR} names no wshost binary"))?;
                        PathBuf::from(base)
                    }
                    _ => sibling_binary("wshost")?,
                };
                wshost_serve_with(
                    &binary,
                    &[
                        "--max-connections".into(),
                        conns.to_string(),
                        "--route".into(),
                        format!(
                            "/mirror={}",
                            guests.join(format!("{mirror}.wasm")).display()
                        ),
                        "--route".into(),
                        format!(
                            "/broadcast={}",
                            guests.join(format!("{broadcast}.wasm")).display()
                        ),
                    ],
                )
            }
            Kind::Bun => {
                let bun = peers.join("node_modules/.bin/bun");
                if !bun.exists() {
                    return Err(format!(
                        "no {} (run `npm install --prefix bench/peers`)",
                        bun.display()
                    ));
                }
                let mut cmd = Command::new(bun);
                cmd.arg(peers.join("bun-server.js"));
                cmd
            }
            Kind::Node => {
                if !peers.join("node_modules/ws").exists() {
                    return Err("no ws package (run `npm install --prefix bench/peers`)".into());
                }
                let mut cmd = Command::new("node");
                cmd.arg(peers.join("node-server.js"));
                cmd
            }
        };
        Ok(cmd)
    }

    /// Whether this server can run here; a reason when it cannot.
    pub fn available(self) -> Result<(), String> {
        self.command().map(drop)?;
        if self == Kind::Node
            && std::process::Command::new("node")
                .arg("--version")
                .output()
                .is_err()
        {
            return Err("no node on PATH".into());
        }
        Ok(())
    }
}

/// wshost's own measure of one instantiation of the mirror guest, in µs.
pub async fn wshost_instantiate_micros() -> Result<f64> {
    let mirror = Path::new(ROOT).join("target/guests/wasm32-wasip2/guest/mirror.wasm");
    Ok(wshost_check(&mirror).await?.instantiate_micros)
}

/// What `wshost check` measures of one component.
pub struct Check {
    /// Compiling it at a first start (and storing it in the compile cache).
    pub compile_ms: f64,
    /// Loading it from the compile cache at a restart.
    pub cached_ms: f64,
    pub instantiate_micros: f64,
}

pub async fn wshost_check(component: &Path) -> Result<Check> {
    let wshost = sibling_binary("wshost").map_err(anyhow::Error::msg)?;
    let out = Command::new(wshost)
        .arg("check")
        .arg(component)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let number_after = |label: &str| -> Result<f64> {
        stdout
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| {
                format!(
                    "no {label:?} in what wshost check said: {stdout:?} ({}; stderr: {})",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
    };
    Ok(Check {
        compile_ms: number_after("compiled in ")?,
        cached_ms: number_after("loaded in ")?,
        instantiate_micros: number_after("instantiates in ")?,
    })
}

/// `wshost serve` with `args` after the listen address, as a `Kind::Wshost` server.
pub async fn wshost_with(args: &[String]) -> Result<Server> {
    let cmd = wshost_serve(args).map_err(anyhow::Error::msg)?;
    Server::spawn(Kind::Wshost, cmd).await
}

/// The command line of `wshost serve` on a free port of 127.0.0.1, then `args`.
fn wshost_serve(args: &[String]) -> Result<Command, String> {
    Ok(wshost_serve_with(&sibling_binary("wshost")?, args))
}

/// `binary serve` on a free port with `args`.
fn wshost_serve_with(binary: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn");
    cmd
}

/// A running server, killed on drop.
pub struct Server {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    pub async fn start(kind: Kind) -> Result<Server> {
        Server::spawn(kind, kind.command().map_err(anyhow::Error::msg)?).await
    }

    /// Start `kind` with room for `conns` connections (at least the usual 20,000).
    pub async fn start_sized(kind: Kind, conns: usize) -> Result<Server> {
        let command = kind.command_for(conns.max(20_000));
        Server::spawn(kind, command.map_err(anyhow::Error::msg)?).await
    }

    async fn spawn(kind: Kind, mut cmd: Command) -> Result<Server> {
        if let Some(cores) = pin::server_cores() {
            // SAFETY: between fork and exec only the async-signal-safe
            // sched_setaffinity runs, on a set built before the fork.
            unsafe {
                cmd.pre_exec(move || pin::to(&cores));
            }
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .with_context(|| format!("{} did not start within 60 s", kind.name()))??
            .with_context(|| format!("{} exited before listening", kind.name()))?;
        let Some(addr) = first.rsplit("://").next().and_then(|a| a.parse().ok()) else {
            bail!("{} said {first:?} instead of where it listens", kind.name());
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { kind, addr, child })
    }

    /// Wait until the server has done what the last load left it (closing
    /// its connections, dropping their instances): until its threads use
    /// under 1 ms of CPU in 50 ms, 3 s at most. The servers are loaded one
    /// after another on the same cores: without this, a figure paid for the
    /// previous server's teardown (broadcast to 1,000: the server measured
    /// after the handler world had 1,000 instances to drop got 0.6x of its
    /// figure measured after another).
    pub async fn settle(&self) -> Result<()> {
        const QUIET_NS: u64 = 1_000_000;
        const WINDOW: Duration = Duration::from_millis(50);
        let pid = self.child.id().context("the server has exited")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let mut last = cpu_ns(pid)?;
        loop {
            tokio::time::sleep(WINDOW).await;
            let now = cpu_ns(pid)?;
            if now.saturating_sub(last) < QUIET_NS || tokio::time::Instant::now() > deadline {
                return Ok(());
            }
            last = now;
        }
    }

    /// CPU time the server's threads have used so far, in ns.
    pub fn cpu_ns(&self) -> Result<u64> {
        cpu_ns(self.child.id().context("the server has exited")?)
    }

    /// The server's proportional set size, in bytes: its resident pages,
    /// each shared one divided among the mappings that share it. A
    /// handler-world instance maps its component's memory image
    /// copy-on-write: every image page it reads counts once more in RSS
    /// but is one page of the machine's memory; PSS counts it once.
    pub fn pss(&self) -> Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        kib_field(&rollup, "Pss:").context("no Pss in smaps_rollup")
    }

    /// The server's resident set size, in bytes.
    pub fn rss(&self) -> Result<u64> {
        let pid = self.child.id().context("the server has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        kib_field(&status, "VmRSS:").context("no VmRSS")
    }
}

/// The `NAME:   123 kB` line of a /proc file, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib * 1024)
}

/// `--pin`: the servers on one set of cores, the load on the others, so a
/// server's figure is what one core does and the load never competes with
/// it (on a noisy 2-core VM: the server on core 0, the load on core 1).
pub mod pin {
    use std::sync::OnceLock;

    static SERVER: OnceLock<Vec<usize>> = OnceLock::new();

    /// Pin this process (the load) to every core but the first `server`,
    /// and servers started from now on to those.
    pub fn split(server: usize) -> anyhow::Result<()> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        anyhow::ensure!(
            cores > server,
            "--pin needs more than {server} cores, this machine shows {cores}"
        );
        let load: Vec<usize> = (server..cores).collect();
        to(&load)?;
        let _ = SERVER.set((0..server).collect());
        Ok(())
    }

    /// The cores servers are pinned to, when `--pin` was given.
    pub fn server_cores() -> Option<Vec<usize>> {
        SERVER.get().cloned()
    }

    /// Pin the calling process (or, before exec, the child) to `cores`.
    pub fn to(cores: &[usize]) -> std::io::Result<()> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
        // sched_setaffinity only read and write it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &core in cores {
                libc::CPU_SET(core, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// CPU time used by process `pid`'s threads so far, in ns (the first field
/// of each thread's `schedstat`: finer than the 10 ms ticks of `stat`).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for thread in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = thread?.path().join("schedstat");
        // A thread that ended since the listing has no file: it counts no more.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .context("unreadable schedstat")?;
    }
    Ok(total)
}

/// A binary built beside this one (`target/release/NAME`).
fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no {} (build it: `cargo build --release -p wshost`)",
            path.display()
        ))
    }
}
