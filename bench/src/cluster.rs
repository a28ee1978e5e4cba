//! What `--cluster` and topic history cost: one publisher's messages fanned
//! out to N subscribers of the `chat` route (event world, topic `chat`),
//! first all on one wshost process, then the same with history kept
//! (`guests/recover-chat`: every message numbered, kept and sent in the JSON
//! envelope), then spread over two processes on one Redis (started here),
//! the publisher on the first, without and with history (kept in Redis
//! Streams: a publish is numbered there and comes back to both processes
//! through Redis, the publisher's own too). With history on one process,
//! also the memory a kept message costs.
//!
//! Two phases per run: a burst (messages back to back) for deliveries per
//! second, then paced messages (below capacity, so no queueing) for the
//! publish-to-delivery latency: each message carries its send time, each
//! subscriber notes its arrival. In the two-process run the latency of the
//! subscribers on the other process, less that of those on the publisher's,
//! is what Redis adds.

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::load::{self, Client};
use crate::report::{Better, Report};
use crate::servers;

/// Messages in the burst.
const BURST: usize = 50;
/// Paced messages, and the pause between them.
const PACED: usize = 50;
const PACE: Duration = Duration::from_millis(20);
const WAIT: Duration = Duration::from_secs(60);

/// A `redis-server` of the run's own, on a free port.
struct Redis {
    _child: Child,
    url: String,
}

async fn redis() -> Result<Redis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (apt-get install redis-server)")?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("redis-server did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Redis {
        _child: child,
        url: format!("redis://127.0.0.1:{port}"),
    })
}

/// Latencies (µs) one subscriber saw, and how many messages it got.
type Seen = Vec<u32>;

/// Read `count` messages on `ws`; the latency of those sent at a time
/// (a number: µs since `epoch`), none for others.
async fn subscriber(mut ws: Client, count: usize, epoch: Instant) -> Result<(Client, Seen)> {
    let mut seen = Vec::with_capacity(count);
    for got in 0..count {
        let text = match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            other => bail!("a subscriber broke after {got} of {count}: {other:?}"),
        };
        let arrived = epoch.elapsed().as_micros() as u64;
        let sent = sent_at(text.as_str()).parse::<u64>();
        if let Ok(sent) = sent {
            seen.push(arrived.saturating_sub(sent) as u32);
        }
    }
    Ok((ws, seen))
}

/// What a message says: `chat`'s `Сервер：X`, or `recover-chat`'s
/// `{"offset":N,"epoch":"E","text":"X"}` (a number needs no unescaping).
fn sent_at(text: &str) -> &str {
    match text.split_once(r#""text":""#) {
        Some((_, rest)) => rest.trim_end_matches("\"}"),
        None => text.trim_start_matches(crate::native::PREFIX),
    }
}

/// All subscribers read `count` messages at once; hands them back with
/// what each saw.
async fn read_all(
    clients: Vec<Client>,
    count: usize,
    epoch: Instant,
) -> Result<Vec<(Client, Seen)>> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|ws| tokio::spawn(subscriber(ws, count, epoch)))
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(task.await??);
    }
    Ok(back)
}

/// What one run measured.
struct Fanout {
    deliveries_per_sec: f64,
    /// Latencies (µs) on the publisher's process and on the other one.
    local: Vec<u32>,
    remote: Vec<u32>,
}

/// `subscribers` of `/chat`, split evenly over `addrs`; the publisher (one
/// more subscriber) on the first.
async fn fanout(addrs: &[SocketAddr], subscribers: usize) -> Result<Fanout> {
    let epoch = Instant::now();
    let mut groups = Vec::new();
    for &addr in addrs {
        groups.push(load::connect_many(addr, "/chat", subscribers / addrs.len()).await?);
    }
    let mut publisher = load::connect(addrs[0], "/chat").await?;
    let total = subscribers / addrs.len() * addrs.len() + 1;
    // Everyone hears a warm-up before anything is measured (the other
    // process's topic subscription in Redis included).
    tokio::time::sleep(Duration::from_millis(500)).await;
    publisher.send(Message::text("warm-up")).await?;
    let mut warmed = Vec::new();
    for group in groups {
        warmed.push(
            read_all(group, 1, epoch)
                .await?
                .into_iter()
                .map(|(ws, _)| ws)
                .collect(),
        );
    }
    let (mut publisher, _) = subscriber(publisher, 1, epoch).await?;

    // The burst: deliveries per second.
    let began = Instant::now();
    let readers: Vec<_> = warmed
        .into_iter()
        .map(|group: Vec<Client>| tokio::spawn(read_all(group, BURST, epoch)))
        .collect();
    for i in 0..BURST {
        publisher.send(Message::text(format!("burst {i}"))).await?;
    }
    let mut groups = Vec::new();
    for reader in readers {
        groups.push(
            reader
                .await??
                .into_iter()
                .map(|(ws, _)| ws)
                .collect::<Vec<_>>(),
        );
    }
    let deliveries_per_sec = (total * BURST) as f64 / began.elapsed().as_secs_f64();
    let (mut publisher, _) = subscriber(publisher, BURST, epoch).await?;

    // Paced: latency.
    let readers: Vec<_> = groups
        .into_iter()
        .map(|group| tokio::spawn(read_all(group, PACED, epoch)))
        .collect();
    for _ in 0..PACED {
        let sent = epoch.elapsed().as_micros() as u64;
        publisher.send(Message::text(sent.to_string())).await?;
        tokio::time::sleep(PACE).await;
    }
    let mut latencies = Vec::new();
    for reader in readers {
        let group = reader.await??;
        latencies.push(
            group
                .into_iter()
                .flat_map(|(_, seen)| seen)
                .collect::<Vec<_>>(),
        );
    }
    subscriber(publisher, PACED, epoch).await?;
    let mut latencies = latencies.into_iter();
    Ok(Fanout {
        deliveries_per_sec,
        local: latencies.next().unwrap_or_default(),
        remote: latencies.next().unwrap_or_default(),
    })
}

/// Messages published to measure what keeping one costs, and their size.
const KEPT: usize = 10_000;
const KEPT_SIZE: usize = 64;

/// RSS a kept message adds: `KEPT` messages published to `server`'s kept
/// topic (which keeps 10,000) by one client that reads them back.
async fn kept_memory(server: &servers::Server) -> Result<f64> {
    let mut publisher = load::connect(server.addr, "/chat").await?;
    publisher.send(Message::text("warm-up")).await?;
    let (mut publisher, _) = subscriber(publisher, 1, Instant::now()).await?;
    let before = server.rss()?;
    let text = "x".repeat(KEPT_SIZE);
    // In hundreds, read back as they go: the publisher is a subscriber
    // too, and its queue must not be what grows.
    for _ in 0..KEPT / 100 {
        for _ in 0..100 {
            publisher.send(Message::text(text.clone())).await?;
        }
        publisher = subscriber(publisher, 100, Instant::now()).await?.0;
    }
    let after = server.rss()?;
    Ok(after.saturating_sub(before) as f64 / KEPT as f64)
}

fn percentile(samples: &mut [u32], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_unstable();
    let at = ((samples.len() - 1) as f64 * p).round() as usize;
    f64::from(samples[at])
}

/// Run both set-ups `rounds` times; print medians and ratios to one process.
pub async fn run(rounds: usize, subscribers: usize) -> Result<()> {
    let guests = Path::new(servers::ROOT).join("target/guests/wasm32-wasip2/guest");
    let chat = format!("/chat={}", guests.join("chat.wasm").display());
    let kept = format!("/chat={}", guests.join("recover_chat.wasm").display());
    let slots = (subscribers + 200).to_string();
    let names = [
        "1 process",
        "1 process, history",
        "2 processes",
        "2 processes, history",
    ];
    let mut per_message = Vec::new();
    let mut report = Report::new(&names);
    let mut added = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for name in names {
            let route = if name.ends_with("history") {
                &kept
            } else {
                &chat
            };
            let base = vec![
                "--max-connections".to_string(),
                slots.clone(),
                "--route".into(),
                route.clone(),
            ];
            let (_redis, servers) = if name.starts_with("1 process") {
                (None, vec![servers::wshost_with(&base).await?])
            } else {
                let redis = redis().await?;
                let mut args = base.clone();
                args.extend(["--cluster".into(), redis.url.clone()]);
                let one = servers::wshost_with(&args).await?;
                let two = servers::wshost_with(&args).await?;
                (Some(redis), vec![one, two])
            };
            let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
            // Loaded (deliveries/s, latency under fan-out), then one
            // subscriber per process (the latency of the path itself).
            for load in [subscribers, addrs.len()] {
                let loaded = load == subscribers;
                let measured = fanout(&addrs, load).await?;
                let scope = match loaded {
                    true => format!("publish to {subscribers}"),
                    false => "publish to 1 per process".to_string(),
                };
                let figure = |what: &str| format!("{scope}: {what}");
                if loaded {
                    let rate = measured.deliveries_per_sec;
                    report.add(&figure("deliveries/s (burst)"), Better::Higher, name, rate);
                }
                add_latencies(&mut report, name, &figure, measured, &mut added, loaded);
            }
            if name == "1 process, history" {
                per_message.push(kept_memory(&servers[0]).await?);
            }
        }
    }
    report.print();
    per_message.sort_by(f64::total_cmp);
    println!(
        "memory a kept message costs ({KEPT} messages of {KEPT_SIZE} B, RSS before and after, median of rounds): {:.0} B",
        per_message
            .get(per_message.len() / 2)
            .copied()
            .unwrap_or(0.0)
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    println!(
        "latency Redis adds (1 subscriber per process: other process less publisher's, median of rounds): p50 {:.0} µs, p99 {:.0} µs",
        median(&mut added.0),
        median(&mut added.1)
    );
    Ok(())
}

/// Percentiles of what a run measured: all subscribers, and with two
/// processes those on each; on the unloaded run, what Redis added.
fn add_latencies(
    report: &mut Report,
    name: &str,
    figure: &dyn Fn(&str) -> String,
    measured: Fanout,
    added: &mut (Vec<f64>, Vec<f64>),
    loaded: bool,
) {
    let Fanout {
        mut local,
        mut remote,
        ..
    } = measured;
    let mut all = [local.clone(), remote.clone()].concat();
    let paced = 1000 / PACE.as_millis();
    for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
        let what = format!("publish-to-delivery {label} µs (paced {paced}/s)");
        report.add(&figure(&what), Better::Lower, name, percentile(&mut all, p));
        if remote.is_empty() {
            continue;
        }
        let (l, r) = (percentile(&mut local, p), percentile(&mut remote, p));
        let here = figure(&format!("{label} µs, publisher's process"));
        report.add(&here, Better::Lower, name, l);
        let there = figure(&format!("{label} µs, other process"));
        report.add(&there, Better::Lower, name, r);
        if !loaded {
            let sink = if p == 0.5 { &mut added.0 } else { &mut added.1 };
            sink.push(r - l);
        }
    }
}
