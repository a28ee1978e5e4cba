//! What permessage-deflate costs: the same wshost (event_mirror, one
//! instance) with and without `--deflate`, driven by a hand-framed client
//! that offers deflate as browsers do and sends a chat-like JSON text
//! compressed (when agreed). Per message: echo rate at 64 connections; per
//! idle socket: RSS at N sockets that each echoed one message (so each holds
//! its inflate history).

use anyhow::Result;
use std::path::Path;
use std::time::Duration;

use crate::raw::{self, Dial, chat_json, deflate};
use crate::report::Report;
use crate::servers;

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
            let dial = Dial::Plain(server.addr);
            let agreed =
                raw::echo_and_idle(&mut report, name, &server, &dial, idle_conns, duration).await?;
            anyhow::ensure!(
                agreed == (*name == "deflate"),
                "{name}: deflate agreed = {agreed}"
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
