//! A guest's stdout and stderr, line by line into the host's `tracing` log,
//! tagged with the route and connection id.
//!
//! A guest is not trusted with the log: control characters are escaped (a
//! `\r` or an ANSI sequence cannot forge or hide a line), and each stream
//! logs at most `BURST` lines at once and `LINES_PER_SEC` a second on
//! average; what is over is counted and reported, not logged.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// A line longer than this is logged in pieces, so a guest cannot make the
/// host buffer without bound.
const MAX_LINE: usize = 4096;

/// Lines a stream may log at once, then [`LINES_PER_SEC`] a second.
const BURST: f64 = 200.0;
const LINES_PER_SEC: f64 = 100.0;

/// Which of the guest's output streams this is.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Line-buffering sink; clones share the buffer. The last partial line is
/// logged when the last clone is dropped (when the instance goes away).
#[derive(Clone)]
pub struct GuestLog(Arc<Mutex<LineBuffer>>);

struct LineBuffer {
    route: Arc<str>,
    conn: u64,
    stream: Stream,
    pending: Vec<u8>,
    /// Lines that may be logged now (a token bucket).
    allowance: f64,
    refilled: Instant,
    /// Lines dropped since the last one logged.
    dropped: u64,
}

impl GuestLog {
    pub fn new(route: Arc<str>, conn: u64, stream: Stream) -> Self {
        GuestLog(Arc::new(Mutex::new(LineBuffer {
            route,
            conn,
            stream,
            pending: Vec::new(),
            allowance: BURST,
            refilled: Instant::now(),
            dropped: 0,
        })))
    }

    /// Tag the lines from now on with connection `conn` (an event instance
    /// serves many; it tags each event's lines with that event's socket).
    pub fn set_conn(&self, conn: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).conn = conn;
    }

    fn append(&self, mut bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            buf.pending.extend_from_slice(&bytes[..nl]);
            buf.emit();
            bytes = &bytes[nl + 1..];
        }
        buf.pending.extend_from_slice(bytes);
        while buf.pending.len() >= MAX_LINE {
            let rest = buf.pending.split_off(MAX_LINE);
            buf.emit();
            buf.pending = rest;
        }
    }
}

impl LineBuffer {
    /// Say how many lines were dropped since the last said, if any.
    fn report_dropped(&mut self) {
        if self.dropped > 0 {
            let dropped = std::mem::take(&mut self.dropped);
            tracing::warn!(target: "guest", route = %self.route, conn = self.conn, "{dropped} lines of guest output dropped (over {LINES_PER_SEC} a second)");
        }
    }

    fn emit(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SEC;
        self.allowance = (self.allowance + refill).min(BURST);
        self.refilled = now;
        if self.allowance < 1.0 {
            self.dropped += 1;
            self.pending.clear();
            return;
        }
        self.allowance -= 1.0;
        self.report_dropped();
        let line = String::from_utf8_lossy(&self.pending);
        let line = escape_controls(line.trim_end_matches('\r'));
        match self.stream {
            Stream::Stdout => {
                tracing::info!(target: "guest", route = %self.route, conn = self.conn, "{line}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "guest", route = %self.route, conn = self.conn, "{line}")
            }
        }
        self.pending.clear();
    }
}

/// `line` with its control characters (but tab) escaped as `\u{..}`.
fn escape_controls(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return line.into();
    }
    line.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect::<String>()
        .into()
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
        // Said when the next line is logged, or here: a guest that floods
        // and then stops would otherwise never have its drops reported (a
        // flood faster than the refill left the test of it to timing).
        self.report_dropped();
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestLog {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestLog {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl AsyncWrite for GuestLog {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(escape_controls("plain\ttext é"), "plain\ttext é");
        assert_eq!(
            escape_controls("ok\rINFO forged\x1b[2K"),
            "ok\\u{d}INFO forged\\u{1b}[2K"
        );
    }
}
