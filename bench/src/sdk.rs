//! `wshost-bench sdk`: what the guest SDKs (`@wshost/guest`, `wshost`)
//! cost against the raw-bindings guests they replaced
//! (`bench/raw-guests/`, the examples as written before the SDKs), in the
//! same run: component size, instantiate time, idle RSS per connection of
//! the handler world's echo, the event world's chat (events per second
//! through its one instance and the server's CPU per event, steadier on a
//! noisy VM; idle RSS per socket) and, in Python, the coro
//! world's echo. One table per language; ratios to the raw guest. The SDK's
//! event-world sockets carry an attachment the raw chat does not (20–45
//! bytes of JSON: the remote address and subprotocol, for `ws.remoteAddress`
//! and `ws.protocol`): that is part of what the SDK costs, and counted.

use crate::languages::{PIPELINED, chat_server, idle_memory};
use crate::load;
use crate::report::{Better, Report};
use crate::servers::{ROOT, wshost_check};
use anyhow::{Context, Result, ensure};
use std::path::{Path, PathBuf};

/// One build of a language's guests: echo, chat and, where there is one,
/// coro echo.
struct Build {
    column: String,
    dir: PathBuf,
}

fn run_script(script: &Path, args: &[&Path]) -> Result<()> {
    let run = std::process::Command::new(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        run.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&run.stderr).trim()
    );
    Ok(())
}

/// The languages measured: `js`, `python` or both.
pub const LANGS: [&str; 2] = ["js", "python"];

pub async fn run(langs: &[String], rounds: usize, idle: usize, event_idle: usize) -> Result<()> {
    let root = Path::new(ROOT);
    let built = root.join("target/guests");
    let raw = built.join("raw");
    for lang in langs {
        ensure!(
            LANGS.contains(&lang.as_str()),
            "--langs: {lang:?} is not one of {LANGS:?}"
        );
    }
    for lang in langs {
        // The SDK guests first: their scripts install the toolchains the raw
        // guests' script borrows.
        run_script(
            &root.join("guests").join(lang).join("build.sh"),
            &[&built.join(lang)],
        )?;
        run_script(
            &root.join("bench/raw-guests/build.sh"),
            &[&raw, Path::new(lang)],
        )?;
    }
    for lang in langs {
        let builds = [
            Build {
                column: format!("{lang}, raw bindings"),
                dir: raw.join(lang),
            },
            Build {
                column: format!("{lang}, SDK"),
                dir: built.join(lang),
            },
        ];
        let columns: Vec<&str> = builds.iter().map(|b| b.column.as_str()).collect();
        let mut report = Report::new(&columns);
        for build in &builds {
            let size = std::fs::metadata(build.dir.join("echo.wasm"))?.len();
            report.add(
                "echo component: KiB",
                Better::Lower,
                &build.column,
                size as f64 / 1024.0,
            );
        }
        for round in 1..=rounds {
            eprintln!("{lang}: round {round} of {rounds}");
            // Raw first in odd rounds, SDK first in even ones: neither
            // always meets the machine in the same state.
            let order: Vec<&Build> = if round % 2 == 1 {
                builds.iter().collect()
            } else {
                builds.iter().rev().collect()
            };
            for build in order {
                let echo = build.dir.join("echo.wasm");
                let check = wshost_check(&echo).await?;
                report.add(
                    "echo: instantiate µs",
                    Better::Lower,
                    &build.column,
                    check.instantiate_micros,
                );
                let growth = idle_memory(&echo, idle).await?;
                let figure = format!("echo: idle RSS at {idle} conn: KiB/conn");
                report.add(&figure, Better::Lower, &build.column, growth.rss / 1024.0);
                // An instance per connection, each reading pages of one
                // shared memory image: RSS counts each page once per
                // instance, PSS once.
                let figure = format!("echo: idle PSS at {idle} conn: KiB/conn");
                report.add(&figure, Better::Lower, &build.column, growth.pss / 1024.0);
                let chat = build.dir.join("chat.wasm");
                let server = chat_server(&chat, event_idle).await?;
                let cpu = server.cpu_ns()?;
                let rate = load::pipelined(server.addr, "/chat", PIPELINED).await?;
                // Steadier than the rate on this VM: what the server spent
                // per event, warm-up included, whoever was the bottleneck.
                let events = (PIPELINED + load::WARM_UP) as f64;
                let per_event = (server.cpu_ns()? - cpu) as f64 / events / 1000.0;
                eprintln!(
                    "{}: chat {rate:.0} events/s, {per_event:.2} µs of server CPU each",
                    build.column
                );
                report.add(
                    "chat: events/s through one instance",
                    Better::Higher,
                    &build.column,
                    rate,
                );
                report.add(
                    "chat: server CPU µs/event",
                    Better::Lower,
                    &build.column,
                    per_event,
                );
                drop(server);
                let server = chat_server(&chat, event_idle).await?;
                let growth = load::idle_growth(&server, "/chat", event_idle).await?;
                let figure = format!("chat: idle RSS at {event_idle} conn: KiB/conn");
                report.add(&figure, Better::Lower, &build.column, growth.rss / 1024.0);
                drop(server);
                let coro = build.dir.join("coro_echo.wasm");
                if coro.exists() {
                    let growth = idle_memory(&coro, event_idle).await?;
                    let figure = format!("coro echo: idle RSS at {event_idle} conn: KiB/conn");
                    report.add(&figure, Better::Lower, &build.column, growth.rss / 1024.0);
                }
            }
        }
        println!("\n{lang}:");
        report.print();
    }
    Ok(())
}
