//! What permessage-deflate costs: the same wshost (event_mirror, one
//! instance) with and without `--deflate`, driven by a hand-framed client
//! that offers deflate as browsers do and sends a chat-like JSON text
//! compressed (when agreed). Per message: echo rate at 64 connections; per
//! idle socket: RSS at N sockets that each echoed one message (so each holds
//! its inflate history).

use anyhow::{Context, Result, bail};
use flate2::{Compress, Compression, FlushCompress};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};

use crate::report::{Better, Report};
use crate::servers::{self, Server};

const WAIT: Duration = Duration::from_secs(30);

/// A chat message as JSON, `size` bytes or a little more.
fn chat_json(size: usize) -> String {
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

/// One client frame, masked; `compressed` sets RSV1.
fn client_frame(payload: &[u8], compressed: bool) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![0x81 | if compressed { 0x40 } else { 0 }];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn deflate(text: &str) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
        .expect("deflate");
    out.truncate(out.len() - 4);
    out
}

/// A raw client connection and whether deflate was agreed.
struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
    deflate: bool,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Result<Raw> {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tcp.write_all(format!(
            "GET /mirror HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).as_bytes()).await?;
        let mut buf = Vec::with_capacity(512);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 512];
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                bail!("closed during the handshake");
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        if !head.starts_with("http/1.1 101") {
            bail!("handshake refused: {head}");
        }
        let deflate = head.contains("sec-websocket-extensions: permessage-deflate");
        buf.drain(..end);
        buf.shrink_to_fit();
        Ok(Raw { tcp, buf, deflate })
    }

    /// Read one whole server frame; its payload length.
    async fn read_frame(&mut self) -> Result<usize> {
        loop {
            if self.buf.len() >= 2 {
                let (start, len) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (4, u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize)
                    }
                    127 if self.buf.len() >= 10 => {
                        (10, u64::from_be_bytes(self.buf[2..10].try_into()?) as usize)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (2, n as usize),
                };
                if start != usize::MAX && self.buf.len() >= start + len {
                    self.buf.drain(..start + len);
                    return Ok(len);
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
                .await
                .context("no echo")??;
            if n == 0 {
                bail!("the server closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Messages per second (and p50 µs) of `conns` clients echoing `text`.
async fn echo(
    addr: SocketAddr,
    conns: usize,
    text: &str,
    duration: Duration,
) -> Result<(f64, f64, bool)> {
    let compressed = Arc::new(client_frame(&deflate(text), true));
    let plain = Arc::new(client_frame(text.as_bytes(), false));
    let start = Arc::new(Barrier::new(conns + 1));
    let mut tasks = Vec::new();
    let mut agreed = false;
    for _ in 0..conns {
        let mut raw = Raw::connect(addr).await?;
        agreed = raw.deflate;
        let frame = if raw.deflate {
            compressed.clone()
        } else {
            plain.clone()
        };
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            start.wait().await;
            let began = Instant::now();
            while began.elapsed() < duration {
                let sent = Instant::now();
                raw.tcp.write_all(&frame).await?;
                raw.read_frame().await?;
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            anyhow::Ok(latencies)
        }));
    }
    start.wait().await;
    let began = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    all.sort_unstable();
    Ok((
        all.len() as f64 / elapsed,
        all[all.len() / 2] as f64,
        agreed,
    ))
}

/// RSS growth per socket with `conns` sockets open, each having echoed `text` once.
async fn idle(server: &Server, conns: usize, text: &str) -> Result<f64> {
    let compressed = Arc::new(client_frame(&deflate(text), true));
    let plain = Arc::new(client_frame(text.as_bytes(), false));
    let _first = Raw::connect(server.addr).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss()?;
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let gate = gate.clone();
        let (compressed, plain, addr) = (compressed.clone(), plain.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut raw = Raw::connect(addr).await?;
            let frame = if raw.deflate { compressed } else { plain };
            raw.tcp.write_all(&frame).await?;
            raw.read_frame().await?;
            raw.buf = Vec::new();
            anyhow::Ok(raw)
        }));
    }
    let mut open = Vec::new();
    for task in tasks {
        open.push(task.await??);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss()?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 / conns as f64)
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
                let (rate, p50, agreed) = echo(server.addr, 64, &text, duration).await?;
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
            let per_conn = idle(&server, idle_conns, &chat_json(2048)).await?;
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
