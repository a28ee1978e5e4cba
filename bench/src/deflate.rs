//! What permessage-deflate costs: the same wshost (event_mirror, one
//! instance) with and without `--deflate`, driven by a hand-framed client
//! that offers deflate as browsers do and sends a chat-like JSON text
//! compressed (when agreed). Per message: echo rate at 64 connections; per
//! idle socket: RSS at N sockets that each echoed one message (so each holds
//! its inflate history).

use anyhow::Result;
use std::path::Path;
use std::time::Duration;

use crate::raw::{self, Dial, deflate};
use crate::report::{Better, Report};
use crate::servers;

/// A chat message as JSON, `size` bytes or a little more.
pub fn chat_json(size: usize) -> String {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!(
            r#"{{"user":"user{}","room":"general","text":"message number {i} about the weather","ts":{}}},"#,
            i % 17,
            1_700_000_000 + i * 7
        ));
        i += 1;
    }
    out.push(']');
    out
}

/// Run the comparison `rounds` times; print medians and ratios to no deflate.
pub async fn run(rounds: usize, idle_conns: usize, seconds: f64) -> Result<()> {
    let guests = Path::new(servers::ROOT).join("target/guests/wasm32-wasip2/guest");
    let mirror = format!("/mirror={}", guests.join("event_mirror.wasm").display());
    let names = ["no deflate", "deflate"];
    let mut report = Report::new(&names);
    let duration = Duration::from_secs_f64(seconds);
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for (name, flags) in names.iter().zip([&[][..], &["--deflate".to_string()][..]]) {
            let mut args = vec![
                "--max-connections".into(),
                (idle_conns + 200).to_string(),
                "--route".into(),
                mirror.clone(),
            ];
            args.extend(flags.iter().cloned());
            let server = servers::wshost_with(&args).await?;
            for size in [256, 4096] {
                let text = chat_json(size);
                let dial = Dial::Plain(server.addr);
                let (rate, p50, agreed) = raw::echo(&dial, 64, &text, duration).await?;
                anyhow::ensure!(
                    agreed == (*name == "deflate"),
                    "{name}: deflate agreed = {agreed}"
                );
                report.add(
                    &format!("echo {size} B JSON, 64 conn: msg/s"),
                    Better::Higher,
                    name,
                    rate,
                );
                report.add(
                    &format!("echo {size} B JSON, 64 conn: p50 µs"),
                    Better::Lower,
                    name,
                    p50,
                );
            }
            let dial = Dial::Plain(server.addr);
            let per_conn = raw::idle(&server, &dial, idle_conns, &chat_json(2048)).await?;
            report.add(
                &format!("idle RSS at {idle_conns} conn (each echoed 2 KiB): KiB/conn"),
                Better::Lower,
                name,
                per_conn / 1024.0,
            );
        }
    }
    let text = chat_json(4096);
    println!(
        "a {} B JSON message compresses to {} B (flate2 fast level, as the host's compressor)",
        text.len(),
        deflate(&text).len()
    );
    report.print();
    Ok(())
}
