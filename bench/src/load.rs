//! The loads: closed-loop echo, idle connections, connection set-up, and
//! broadcast fan-out. Every load is bounded in count and time and speaks
//! only to 127.0.0.1.

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::servers::Server;

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connections opened at once while setting up a load.
const CONNECT_PARALLEL: usize = 64;

/// How long any single wait may take before the load counts as failed.
const WAIT: Duration = Duration::from_secs(30);

pub async fn connect(addr: SocketAddr, path: &str) -> Result<Client> {
    connect_from(addr, path, 0).await
}

/// Connections opened from one source address: the kernel's ephemeral
/// ports (32768-60999) bound how many one address can open to one server
/// port, so past this many the load moves to the next loopback address.
const PER_SOURCE: usize = 20_000;

/// Connect as the `n`th connection of a load (which picks its source address).
async fn connect_from(addr: SocketAddr, path: &str, n: usize) -> Result<Client> {
    // Small client buffers: 10,000 idle clients must fit beside the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = format!("ws://{addr}{path}");
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )?;
    let connecting = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if n >= PER_SOURCE && addr.ip().is_loopback() {
            // All of 127.0.0.0/8 is loopback: 127.0.0.2, .3, ... (binding
            // the first range too would take ports the way bind does, without
            // the destination, and run out of them sooner).
            let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (n / PER_SOURCE) as u8);
            socket.set_reuseaddr(true)?;
            socket.bind((source, 0).into())?;
        }
        let tcp = socket.connect(addr).await?;
        tcp.set_nodelay(true)?;
        let stream = MaybeTlsStream::Plain(tcp);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(WAIT, connecting)
        .await
        .context("handshake timed out")?
        .with_context(|| format!("connecting to {url}"))
}

/// Open `n` connections to `path`, `CONNECT_PARALLEL` at a time.
pub async fn connect_many(addr: SocketAddr, path: &'static str, n: usize) -> Result<Vec<Client>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                connect_from(addr, path, i).await
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(n);
    for task in tasks {
        clients.push(task.await??);
    }
    Ok(clients)
}

/// What idle connections cost a server, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Growth {
    /// RSS growth per connection.
    pub rss: f64,
    /// PSS growth per connection: what the machine pays (see [`Server::pss`]).
    pub pss: f64,
    /// The server's whole RSS with the connections open.
    pub rss_after: u64,
}

/// What `conns` idle connections to `path` cost the server.
pub async fn idle_growth(server: &Server, path: &'static str, conns: usize) -> Result<Growth> {
    // One connection first, so one-time costs are not counted per connection.
    let _first = connect(server.addr, path).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss, pss) = (server.rss()?, server.pss()?);
    let clients = connect_many(server.addr, path, conns).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_after, pss_after) = (server.rss()?, server.pss()?);
    drop(clients);
    let per_conn = |before: u64, after: u64| after.saturating_sub(before) as f64 / conns as f64;
    Ok(Growth {
        rss: per_conn(rss, rss_after),
        pss: per_conn(pss, pss_after),
        rss_after,
    })
}

/// Throughput and latency of a closed-loop echo load.
#[derive(Debug, Clone, Copy)]
pub struct Echo {
    pub msgs_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// The server's CPU time per message echoed (all its threads).
    pub cpu_per_msg: Duration,
    /// The server's CPU time over the wall time: how many cores it kept
    /// busy (how far it spread over the cores it was given).
    pub cores_busy: f64,
}

/// `conns` connections each send a `size`-byte text message and wait for it
/// to come back, over and over, for `duration`.
pub async fn echo(server: &Server, conns: usize, size: usize, duration: Duration) -> Result<Echo> {
    let addr = server.addr;
    let clients = connect_many(addr, "/mirror", conns).await?;
    let start = Arc::new(Barrier::new(conns + 1));
    let payload: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            let start = start.clone();
            let msg = Message::text(payload.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                start.wait().await;
                let began = Instant::now();
                while began.elapsed() < duration {
                    let sent = Instant::now();
                    ws.send(msg.clone()).await?;
                    match tokio::time::timeout(WAIT, ws.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.len() == size => {}
                        other => bail!("echo broke: {other:?}"),
                    }
                    latencies.push(sent.elapsed().as_micros() as u32);
                }
                let _ = ws.close(None).await;
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let cpu_before = server.cpu_ns()?;
    start.wait().await;
    let began = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = began.elapsed();
    let cpu = server.cpu_ns()?.saturating_sub(cpu_before);
    all.sort_unstable();
    let at = |q: f64| Duration::from_micros(all[((all.len() - 1) as f64 * q) as usize].into());
    Ok(Echo {
        msgs_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        cpu_per_msg: Duration::from_nanos(cpu / all.len().max(1) as u64),
        cores_busy: cpu as f64 / elapsed.as_nanos().max(1) as f64,
    })
}

/// Connections set up (TCP + handshake, and the server's per-connection
/// work) per second, `parallel` at a time; each is closed at once.
pub async fn setup_rate(addr: SocketAddr, count: usize, parallel: usize) -> Result<f64> {
    let began = Instant::now();
    let workers: Vec<_> = (0..parallel)
        .map(|w| {
            tokio::spawn(async move {
                for _ in (w..count).step_by(parallel) {
                    let mut ws = connect(addr, "/mirror").await?;
                    // One round trip proves the server-side handler is running.
                    ws.send(Message::text("up")).await?;
                    ws.next().await.context("no echo")??;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(count as f64 / began.elapsed().as_secs_f64())
}

/// Messages [`pipelined`] sends before it starts timing.
pub const WARM_UP: usize = 2_000;

/// Messages per second one client gets back when it sends `count` text
/// messages to `path`, up to `WINDOW` ahead of the answers, and reads one
/// answer for each (the `chat` guest publishes each to its one subscriber,
/// the sender). The window keeps the server's queue for the client (1,024
/// messages) from overflowing.
///
/// The first [`WARM_UP`] answers are not timed: the guest's first messages
/// pay for its interpreter's warming (CPython specializing its bytecode,
/// the instance's memory growing), which a short run would count as
/// throughput.
pub async fn pipelined(addr: SocketAddr, path: &str, count: usize) -> Result<f64> {
    const WINDOW: usize = 256;
    let ws = connect(addr, path).await?;
    // Let the server subscribe the socket before the first message.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut tx, mut rx) = ws.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let total = WARM_UP + count;
    let sender = tokio::spawn({
        let window = window.clone();
        async move {
            for i in 0..total {
                window.acquire().await?.forget();
                tx.send(Message::text(format!("m{i}"))).await?;
            }
            Ok::<_, anyhow::Error>(())
        }
    });
    let mut began = Instant::now();
    for got in 0..total {
        if got == WARM_UP {
            began = Instant::now();
        }
        match tokio::time::timeout(WAIT, rx.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => window.add_permits(1),
            other => bail!("pipelined messages broke after {got} of {total}: {other:?}"),
        }
    }
    let elapsed = began.elapsed();
    sender.await??;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// Messages delivered per second when one client's messages fan out to
/// `clients` connections of `/broadcast` (the sender included).
pub async fn broadcast(addr: SocketAddr, clients: usize, messages: usize) -> Result<f64> {
    let mut members = connect_many(addr, "/broadcast", clients).await?;
    // Servers may register a connection just after its handshake: give them
    // a moment, then check that everyone gets a warm-up message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sender = members.last_mut().expect("at least one client");
    sender.send(Message::text("warm-up")).await?;
    let mut members = read_texts_all(members, 1).await?;
    let mut sender = members.pop().unwrap();
    let began = Instant::now();
    let readers = tokio::spawn(read_texts_all(members, messages));
    for i in 0..messages {
        sender.send(Message::text(format!("message {i}"))).await?;
    }
    read_texts(sender, messages).await?;
    readers.await??;
    Ok((clients * messages) as f64 / began.elapsed().as_secs_f64())
}

/// Read `n` text messages on each client, all at once; hands the clients back.
async fn read_texts_all(clients: Vec<Client>, n: usize) -> Result<Vec<Client>> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(read_texts(ws, n)))
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(task.await??);
    }
    Ok(back)
}

async fn read_texts(mut ws: Client, n: usize) -> Result<Client> {
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => got += 1,
            Ok(Some(Ok(_))) => {}
            other => bail!("broadcast broke after {got} of {n}: {other:?}"),
        }
    }
    Ok(ws)
}
