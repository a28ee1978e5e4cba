//! The HTTP/1.1 side of a connection as the host drives it: reading the
//! request head off the socket within its deadline, writing responses and
//! closing. What the bytes mean (the head's parse, the handshake's checks,
//! the responses' bytes) is `wshost_proto::http`, re-exported here.
//!
//! wshost answers one request per TCP connection (`connection: close`); a
//! request body is never read.

pub use wshost_proto::http::*;

use crate::net::transport::Stream;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from the socket at once while the head arrives.
const READ_CHUNK: usize = 2048;

/// Read one request head. Returns it with any bytes the client sent after it
/// (the start of its first WebSocket frames, should it not wait for the 101).
pub async fn read_head(
    stream: &mut Stream,
    max_size: usize,
    timeout: Duration,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut parses = Parses::default();
        loop {
            if parses.due(&buf)
                && let Some(parsed) = parse_head(&buf)?
            {
                return Ok(parsed);
            }
            if buf.len() >= max_size {
                return Err(HeadError::TooLarge(max_size));
            }
            // Straight into `buf`'s spare room: a buffer on the stack would
            // live in every connection task's state for the task's life.
            let want = READ_CHUNK.min(max_size - buf.len());
            buf.reserve(want);
            let n = (&mut *stream).take(want as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(HeadError::Eof);
            }
        }
    };
    let (head, consumed) = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| HeadError::Timeout(timeout))??;
    buf.drain(..consumed);
    Ok((head, buf))
}

/// When a head read in pieces is parsed again: once the bytes hold the
/// blank line that ends a head, or have doubled since the last parse (so a
/// malformed head is still refused early). Parsing after every read, a
/// client sending its 16 KiB head a byte at a time made the host scan
/// ~128 MiB; now at most twice the head, plus the parse that completes it.
#[derive(Default)]
struct Parses {
    /// The buffer's length when it was last parsed (0: never).
    parsed: usize,
    /// The buffer's length when it was last looked at.
    seen: usize,
}

impl Parses {
    fn due(&mut self, buf: &[u8]) -> bool {
        // The end may straddle what was seen and what came: look back 2.
        let fresh = &buf[self.seen.saturating_sub(2)..];
        let ends =
            fresh.windows(2).any(|w| w == b"\n\n") || fresh.windows(3).any(|w| w == b"\n\r\n");
        self.seen = buf.len();
        let due = self.parsed == 0 || ends || buf.len() >= 2 * self.parsed;
        if due {
            self.parsed = buf.len().max(1);
        }
        due
    }
}

/// How long a closed-off connection's unread input is drained (see [`linger`]).
pub const LINGER: Duration = Duration::from_secs(1);

/// Write a whole response and end our side, within `write_timeout`: a
/// client that does not read loses its connection, not the server a slot.
pub async fn send_and_finish(
    stream: &mut Stream,
    bytes: &[u8],
    write_timeout: Duration,
) -> std::io::Result<()> {
    let send = async {
        stream.write_all(bytes).await?;
        stream.shutdown().await
    };
    tokio::time::timeout(write_timeout, send)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Read (and drop) what the client still sends, until it closes or for at
/// most [`LINGER`]: a socket closed with unread input is reset, and a reset
/// can destroy the response before the client has read it.
pub async fn linger(stream: &mut Stream) {
    let drain = async {
        let mut sink = [0u8; 1024];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// [`send_and_finish`], then [`linger`]: how the host answers what it
/// refuses (bad requests, no route, 503, 500).
pub async fn refuse(stream: &mut Stream, bytes: &[u8], write_timeout: Duration) {
    if send_and_finish(stream, bytes, write_timeout).await.is_ok() {
        linger(stream).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Parses;

    /// A 16 KiB head arriving a byte at a time is parsed a handful of
    /// times, not once a byte; its end is parsed the moment it arrives.
    #[test]
    fn a_head_read_in_pieces_is_parsed_a_few_times() {
        let mut head = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() < 16 << 10 {
            head.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let mut parses = Parses::default();
        let mut scanned = 0;
        let mut due_at_end = false;
        for n in 1..=head.len() {
            if parses.due(&head[..n]) {
                scanned += n;
                due_at_end = n == head.len();
            }
        }
        assert!(due_at_end, "the end was not parsed when it came");
        assert!(scanned <= 3 * head.len(), "scanned {scanned} bytes");
    }

    #[test]
    fn the_first_bytes_are_parsed_at_once() {
        let mut parses = Parses::default();
        assert!(
            parses.due(b"\x16\x03"),
            "garbage is refused at its first read"
        );
    }
}
