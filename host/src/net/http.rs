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
        loop {
            if let Some(parsed) = parse_head(&buf)? {
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
