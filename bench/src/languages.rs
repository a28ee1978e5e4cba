//! `wshost-bench languages`: the seed's echo handler in every guest language
//! side by side, with ratios to the Rust guest: component size, compile time
//! at a first start and a restart (from the compile cache), instantiate time,
//! and RSS per idle connection; then the event world's `chat` in every
//! language: RSS per idle socket (one instance serves them all) and events
//! per second through that one instance.

use crate::load;
use crate::report::{Better, Report};
use crate::servers::{ROOT, wshost_check, wshost_with};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The echo guest of one language, its event-world `chat`, and its
/// coroutine echo where the language has one (Rust, Python).
struct Guest {
    lang: &'static str,
    component: PathBuf,
    chat: PathBuf,
    coro: Option<PathBuf>,
}

/// Rust's echo (built with wshost) and every other language whose build
/// script succeeds here; a notice for each one that does not.
fn guests() -> Vec<Guest> {
    let root = Path::new(ROOT);
    let built = root.join("target/guests");
    let rust = built.join("wasm32-wasip2/guest");
    let mut guests = vec![Guest {
        lang: "rust",
        component: rust.join("echo.wasm"),
        chat: rust.join("chat.wasm"),
        coro: Some(rust.join("coro_echo.wasm")),
    }];
    for (lang, dir) in [("js", "js"), ("python", "python"), ("c", "c")] {
        let out = built.join(dir);
        let script = root.join("guests").join(dir).join("build.sh");
        match std::process::Command::new(&script).arg(&out).output() {
            Ok(run) if run.status.success() => guests.push(Guest {
                lang,
                component: out.join("echo.wasm"),
                chat: out.join("chat.wasm"),
                coro: Some(out.join("coro_echo.wasm")).filter(|p| p.exists()),
            }),
            Ok(run) => println!(
                "skipping {lang}: {} failed: {}",
                script.display(),
                String::from_utf8_lossy(&run.stderr).trim()
            ),
            Err(e) => println!("skipping {lang}: cannot run {}: {e}", script.display()),
        }
    }
    guests
}

/// Messages one client pipelines through a `chat` instance for the events/s
/// figure (timed after a warm-up): 20,000 (0.3 s of a Python guest) moved
/// its ratios by up to 0.2 between runs.
pub(crate) const PIPELINED: usize = 100_000;

pub async fn run(rounds: usize, idle: usize, event_idle: usize) -> Result<()> {
    let guests = guests();
    anyhow::ensure!(
        guests[0].component.exists(),
        "no {} (build it: `cargo build --release -p wshost`)",
        guests[0].component.display()
    );
    let langs: Vec<&str> = guests.iter().map(|g| g.lang).collect();
    let mut report = Report::new(&langs);
    for guest in &guests {
        let size = std::fs::metadata(&guest.component)?.len();
        report.add(
            "component: KiB",
            Better::Lower,
            guest.lang,
            size as f64 / 1024.0,
        );
    }
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for guest in &guests {
            let check = wshost_check(&guest.component).await?;
            report.add(
                "compile, first start: ms",
                Better::Lower,
                guest.lang,
                check.compile_ms,
            );
            report.add(
                "load, restart from the compile cache: ms",
                Better::Lower,
                guest.lang,
                check.cached_ms,
            );
            report.add(
                "instantiate: µs",
                Better::Lower,
                guest.lang,
                check.instantiate_micros,
            );
            let per_conn = idle_memory(&guest.component, idle).await?.rss;
            let figure = format!("idle RSS at {idle} conn: KiB/conn");
            report.add(&figure, Better::Lower, guest.lang, per_conn / 1024.0);
        }
        for guest in &guests {
            let server = chat_server(&guest.chat, event_idle).await?;
            let rate = load::pipelined(server.addr, "/chat", PIPELINED).await?;
            let figure = "event world, chat: events/s through one instance";
            report.add(figure, Better::Higher, guest.lang, rate);
            drop(server);
            let server = chat_server(&guest.chat, event_idle).await?;
            let per_conn = load::idle_growth(&server, "/chat", event_idle).await?.rss;
            let figure = format!("event world, chat: idle RSS at {event_idle} conn: KiB/conn");
            report.add(&figure, Better::Lower, guest.lang, per_conn / 1024.0);
        }
        for guest in &guests {
            let Some(coro) = &guest.coro else { continue };
            let per_conn = idle_memory(coro, event_idle).await?.rss;
            let figure = format!("coro world, echo: idle RSS at {event_idle} conn: KiB/conn");
            report.add(&figure, Better::Lower, guest.lang, per_conn / 1024.0);
        }
    }
    report.print();
    Ok(())
}

/// What idle connections to `component` cost a fresh server.
pub(crate) async fn idle_memory(component: &Path, conns: usize) -> Result<load::Growth> {
    let server = wshost_with(&[
        "--route".into(),
        format!("/echo={}", component.display()),
        "--max-connections".into(),
        (conns + 16).to_string(),
    ])
    .await?;
    load::idle_growth(&server, "/echo", conns).await
}

/// A fresh server with `chat` (event world) at `/chat`, room for `conns`.
pub(crate) async fn chat_server(chat: &Path, conns: usize) -> Result<crate::servers::Server> {
    wshost_with(&[
        "--route".into(),
        format!("/chat={}", chat.display()),
        "--max-connections".into(),
        (conns + 16).to_string(),
    ])
    .await
}
