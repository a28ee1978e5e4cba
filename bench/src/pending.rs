//! What pending tasks cost the coro world: a cost per event that grows
//! with the tasks waiting in one instance would show here as a falling
//! rate while more sockets sit idle. The same coro_mirror route served
//! with instances capped at `--coro-tasks 2000` (the default: a new
//! instance past 2,000 tasks) and uncapped (one instance a core, all
//! tasks shared among them); the event world's event_mirror beside them
//! as the floor (no tasks at all). Loads, with P sockets idle on the
//! route (each echoed once, its task waiting in `recv`): echo of 32 B at
//! 64 connections, and a burst where each of the P sockets sends one
//! message at once (the spike's round).

use anyhow::Result;
use std::path::Path;
use std::time::Duration;

use crate::raw::{self, Dial};
use crate::report::{Better, Report};
use crate::servers;

const COLUMNS: [(&str, &str, &str); 3] = [
    ("coro, 2,000 a instance", "coro_mirror", "2000"),
    ("coro, uncapped", "coro_mirror", "1000000"),
    ("events", "event_mirror", "2000"),
];

pub async fn run(rounds: usize, pending: &[usize], seconds: f64) -> Result<()> {
    let guests = Path::new(servers::ROOT).join("target/guests/wasm32-wasip2/guest");
    let mut report = Report::new(&COLUMNS.map(|(name, _, _)| name));
    let duration = Duration::from_secs_f64(seconds);
    let text = "x".repeat(32);
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for (column, guest, tasks) in COLUMNS {
            let max = pending.iter().max().copied().unwrap_or(0) + 500;
            let route = format!("/mirror={}", guests.join(format!("{guest}.wasm")).display());
            let args = [
                "--max-connections",
                &max.to_string(),
                "--coro-tasks",
                tasks,
                "--route",
                &route,
            ];
            let server = servers::wshost_with(&args.map(String::from)).await?;
            let dial = Dial::Plain(server.addr);
            let mut idle = Vec::new();
            for &p in pending {
                idle.extend(raw::echoed(&dial, p - idle.len(), &text).await?);
                let (rate, p50, _) = raw::echo(&dial, 64, &text, duration).await?;
                let load = format!("echo 32 B at 64 conn, {p} idle");
                report.add(&format!("{load}: msg/s"), Better::Higher, column, rate);
                report.add(&format!("{load}: p50 µs"), Better::Lower, column, p50);
                if p > 0 {
                    // The first burst wakes tasks idle since they started;
                    // the second is the steady state.
                    raw::burst(&mut idle, &text).await?;
                    let rate = raw::burst(&mut idle, &text).await?;
                    let load = format!("burst: each of {p} sends 1 message: round trips/s");
                    report.add(&load, Better::Higher, column, rate);
                }
            }
        }
    }
    report.print();
    Ok(())
}
