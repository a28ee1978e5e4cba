//! A test guest of the coro world. Each text message is a command: `panic`
//! traps (ending every task of the instance), `spin` computes forever
//! without calling the host, `id` answers this connection's id, `count`
//! answers how many of this instance's tasks are running, `slow-echo`
//! answers `slow` and from then on echoes each message after computing
//! 200 µs for it (a task slower than its client), `flood` pushes
//! 64 KiB messages until a push fails, `work` computes for 300 ms (reading
//! the clock, no other call) and answers `worked`, `after-close-push` and
//! `after-close-recv` wait for the connection to end and then call `push`
//! (or `recv`) forever, each failing (or saying closed) at once; `recover
//! T [OFFSET EPOCH]` keeps topic T's last 100 messages (JSON envelope) and
//! subscribes from that position, answering `recovered N` or `reset OFFSET
//! EPOCH`; `pub T X` publishes X to T; anything else is sent back as it
//! came.

use std::sync::atomic::{AtomicUsize, Ordering};
use wshost_guest::coro::Connection;
use wshost_guest::history::{self, Position, Recovery, Retention};
use wshost_guest::{Error, Request, topics};

/// Tasks of this instance now running (a `static`: shared by all of them).
static RUNNING: AtomicUsize = AtomicUsize::new(0);

async fn probe(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade().await?;
    RUNNING.fetch_add(1, Ordering::Relaxed);
    while let Some(frame) = ws.recv(None).await? {
        if frame.is_close() {
            break;
        }
        match frame.text_lossy().as_ref() {
            "panic" => panic!("a task crashing on purpose"),
            "spin" =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "id" => ws.push_text(&ws.id().to_string()).await?,
            command if command.starts_with("recover ") => {
                let answer = recover(&ws, &command["recover ".len()..]);
                ws.push_text(&answer).await?;
            }
            command if command.starts_with("pub ") => {
                let (topic, text) = command["pub ".len()..].split_once(' ').unwrap_or(("", ""));
                topics::publish(topic, text)?;
            }
            "work" => {
                let until = std::time::Instant::now() + std::time::Duration::from_millis(300);
                while std::time::Instant::now() < until {
                    std::hint::black_box(0);
                }
                ws.push_text("worked").await?;
            }
            command @ ("after-close-push" | "after-close-recv") => {
                ws.push_text("ready").await?;
                while ws.recv(None).await?.is_some() {}
                loop {
                    if command == "after-close-push" {
                        let _ = std::hint::black_box(ws.push_text("anyone?").await);
                    } else {
                        let _ = std::hint::black_box(ws.recv(None).await);
                    }
                }
            }
            "flood" => {
                let block = vec![7u8; 64 << 10];
                while ws.push_binary(&block).await.is_ok() {}
                break;
            }
            "slow-echo" => {
                ws.push_text("slow").await?;
                while let Some(frame) = ws.recv(None).await? {
                    let until = std::time::Instant::now() + std::time::Duration::from_micros(200);
                    while std::time::Instant::now() < until {
                        std::hint::black_box(0);
                    }
                    if frame.is_close() {
                        break;
                    }
                    ws.push(&frame.data, frame.opcode, true).await?;
                }
                break;
            }
            "count" => {
                let running = RUNNING.load(Ordering::Relaxed);
                ws.push_text(&running.to_string()).await?
            }
            other => ws.push_text(other).await?,
        }
    }
    RUNNING.fetch_sub(1, Ordering::Relaxed);
    Ok(())
}

wshost_guest::export_coro!(probe);

/// `recover T [OFFSET EPOCH]`: what the subscription from there did.
fn recover(ws: &Connection, args: &str) -> String {
    let mut words = args.split(' ');
    let topic = words.next().unwrap_or_default();
    let since = match (words.next(), words.next()) {
        (Some(offset), Some(epoch)) => offset.parse().ok().map(|o| Position::new(o, epoch)),
        _ => None,
    };
    let recovered = history::keep(topic, Retention::last(100).json())
        .and_then(|()| ws.subscribe_from(topic, since.as_ref()));
    match recovered {
        Ok(Recovery::Recovered(n)) => format!("recovered {n}"),
        Ok(Recovery::Reset(at)) => format!("reset {} {}", at.offset, at.epoch),
        Err(e) => format!("error {e}"),
    }
}
