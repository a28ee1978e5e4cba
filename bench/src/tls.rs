//! What TLS costs: the same wshost (event_mirror, one instance) serving
//! `ws://` and `wss://` (`--tls-cert`, a self-signed certificate made here),
//! driven by the same hand-framed client. Per message: echo rate at 64
//! connections; per connection: handshakes per second (TCP, TLS and the
//! WebSocket upgrade); per idle socket: RSS at N sockets that each echoed
//! one message.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

use crate::raw::{self, Dial, chat_json};
use crate::report::{Better, Report};
use crate::servers;

/// A certificate for `localhost`, written as PEM into a fresh folder; the
/// client side that trusts it.
fn certificate() -> Result<(PathBuf, TlsConnector)> {
    let dir = std::env::temp_dir().join(format!("wshost-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    std::fs::write(dir.join("cert.pem"), issued.cert.pem())?;
    std::fs::write(dir.join("key.pem"), issued.signing_key.serialize_pem())?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(issued.cert.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((dir, TlsConnector::from(Arc::new(config))))
}

/// Handshakes (connect, TLS if any, upgrade, one echo) per second from
/// `dialers` clients reconnecting for `duration`.
async fn handshakes(dial: &Dial, dialers: usize, duration: Duration) -> Result<f64> {
    let done = Arc::new(AtomicUsize::new(0));
    let text = chat_json(64);
    let began = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..dialers {
        let (dial, done, text) = (dial.clone(), done.clone(), text.clone());
        tasks.push(tokio::spawn(async move {
            while began.elapsed() < duration {
                raw::echo_once(&dial, &text).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64())
}

/// Run the comparison `rounds` times; print medians and ratios to plain TCP.
pub async fn run(rounds: usize, idle_conns: usize, seconds: f64) -> Result<()> {
    let guests = Path::new(servers::ROOT).join("target/guests/wasm32-wasip2/guest");
    let mirror = format!("/mirror={}", guests.join("event_mirror.wasm").display());
    let (dir, connector) = certificate().context("making a test certificate")?;
    let names = ["ws://", "wss://"];
    let mut report = Report::new(&names);
    let duration = Duration::from_secs_f64(seconds);
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for name in names {
            let mut args = vec![
                "--max-connections".into(),
                (idle_conns + 200).to_string(),
                "--route".into(),
                mirror.clone(),
            ];
            let tls = name == "wss://";
            if tls {
                args.extend([
                    "--tls-cert".into(),
                    dir.join("cert.pem").display().to_string(),
                ]);
                args.extend([
                    "--tls-key".into(),
                    dir.join("key.pem").display().to_string(),
                ]);
            }
            let server = servers::wshost_with(&args).await?;
            let dial = match tls {
                true => Dial::Tls(server.addr, connector.clone()),
                false => Dial::Plain(server.addr),
            };
            raw::echo_and_idle(&mut report, name, &server, &dial, idle_conns, duration).await?;
            let rate = handshakes(&dial, 8, duration).await?;
            report.add("handshakes/s (8 dialers)", Better::Higher, name, rate);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.print();
    Ok(())
}
