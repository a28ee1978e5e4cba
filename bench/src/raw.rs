//! A hand-framed WebSocket client for the comparisons of one wshost feature
//! on and off (`deflate`, `tls`): it offers permessage-deflate as browsers
//! do and sends its text compressed when agreed, over plain TCP or TLS.
//! Loads: echo rate at N connections; RSS per idle socket.

use anyhow::{Context, Result, bail};
use flate2::{Compress, Compression, FlushCompress};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};
use tokio_rustls::TlsConnector;

use crate::report::{Better, Report};
use crate::servers::Server;

const WAIT: Duration = Duration::from_secs(30);

/// How a client reaches the server.
#[derive(Clone)]
pub enum Dial {
    Plain(SocketAddr),
    /// TLS, trusting the certificate in the config, to server name `localhost`.
    Tls(SocketAddr, TlsConnector),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Dial {
    async fn open(&self) -> Result<(Box<dyn Io>, SocketAddr)> {
        let addr = match self {
            Dial::Plain(addr) | Dial::Tls(addr, _) => *addr,
        };
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok(match self {
            Dial::Plain(_) => (Box::new(tcp), addr),
            Dial::Tls(_, connector) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")?;
                (Box::new(connector.connect(name, tcp).await?), addr)
            }
        })
    }
}

/// The deflate stream of `text` as a client sends it (RFC 7692 §7.2.1).
pub fn deflate(text: &str) -> Vec<u8> {
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
        .expect("deflate");
    out.truncate(out.len() - 4);
    out
}

/// One client frame, masked; `compressed` sets RSV1.
pub fn client_frame(payload: &[u8], compressed: bool) -> Vec<u8> {
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

/// A raw client connection and whether deflate was agreed.
pub struct Raw {
    tcp: Box<dyn Io>,
    buf: Vec<u8>,
    deflate: bool,
}

impl Raw {
    async fn connect(dial: &Dial) -> Result<Raw> {
        let (mut tcp, addr) = dial.open().await?;
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
pub async fn echo(
    dial: &Dial,
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
        let mut raw = Raw::connect(dial).await?;
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

/// One connection that echoes `text` once and closes.
pub async fn echo_once(dial: &Dial, text: &str) -> Result<()> {
    let mut raw = Raw::connect(dial).await?;
    raw.tcp
        .write_all(&client_frame(text.as_bytes(), false))
        .await?;
    raw.read_frame().await?;
    Ok(())
}

/// RSS growth per socket with `conns` sockets open, each having echoed `text` once.
pub async fn idle(server: &Server, dial: &Dial, conns: usize, text: &str) -> Result<f64> {
    let _first = Raw::connect(dial).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss()?;
    let open = echoed(dial, conns, text).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss()?;
    drop(open);
    Ok(after.saturating_sub(before) as f64 / conns as f64)
}

/// `conns` sockets, opened 64 at a time, that each echoed `text` once and
/// stay open (their handlers wait for the next message).
pub async fn echoed(dial: &Dial, conns: usize, text: &str) -> Result<Vec<Raw>> {
    let compressed = Arc::new(client_frame(&deflate(text), true));
    let plain = Arc::new(client_frame(text.as_bytes(), false));
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let gate = gate.clone();
        let (compressed, plain, dial) = (compressed.clone(), plain.clone(), dial.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await?;
            let mut raw = Raw::connect(&dial).await?;
            let frame = if raw.deflate { compressed } else { plain };
            raw.tcp.write_all(&frame).await?;
            raw.read_frame().await?;
            raw.buf = Vec::new();
            anyhow::Ok(raw)
        }));
    }
    let mut open = Vec::with_capacity(conns);
    for task in tasks {
        open.push(task.await??);
    }
    Ok(open)
}

/// Round trips per second when every one of `conns` sends one message at
/// once (`text`, uncompressed) and the client waits for all the echoes.
pub async fn burst(conns: &mut [Raw], text: &str) -> Result<f64> {
    let frame = client_frame(text.as_bytes(), false);
    let began = Instant::now();
    for raw in conns.iter_mut() {
        raw.tcp.write_all(&frame).await?;
    }
    for raw in conns.iter_mut() {
        raw.read_frame().await?;
    }
    Ok(conns.len() as f64 / began.elapsed().as_secs_f64())
}

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

/// The loads every feature comparison runs, added to `report` under
/// `column`: echo of 256 B and 4 KiB JSON at 64 connections, then RSS per
/// idle socket with `idle` sockets open. Whether deflate was agreed.
pub async fn echo_and_idle(
    report: &mut Report,
    column: &str,
    server: &Server,
    dial: &Dial,
    idle_conns: usize,
    duration: Duration,
) -> Result<bool> {
    let mut agreed = true;
    for size in [256, 4096] {
        let (rate, p50, deflated) = echo(dial, 64, &chat_json(size), duration).await?;
        agreed &= deflated;
        let load = format!("echo {size} B JSON, 64 conn");
        report.add(&format!("{load}: msg/s"), Better::Higher, column, rate);
        report.add(&format!("{load}: p50 µs"), Better::Lower, column, p50);
    }
    let per_conn = idle(server, dial, idle_conns, &chat_json(2048)).await?;
    let figure = format!("idle RSS at {idle_conns} conn (each echoed 2 KiB): KiB/conn");
    report.add(&figure, Better::Lower, column, per_conn / 1024.0);
    Ok(agreed)
}
