//! A socket wrapper that holds a read buffer only while bytes are arriving.
//!
//! tungstenite zeroes its whole read buffer before every read and keeps it
//! for the life of the connection, so its size is resident memory on every
//! idle connection. wshost gives tungstenite a small buffer and puts this
//! wrapper under it: one socket read fills a chunk here, tungstenite takes it
//! in small copies, and when the socket has nothing more to give the chunk is
//! freed. An idle connection then holds no read chunk at all.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once.
pub const CHUNK: usize = 8 << 10;

pub struct ReadAhead<S> {
    inner: S,
    /// Read from the socket, not yet taken; `None` while the socket is quiet.
    chunk: Option<Chunk>,
}

struct Chunk {
    bytes: Box<[MaybeUninit<u8>]>,
    /// `bytes[start..end]` are filled and not yet taken.
    start: usize,
    end: usize,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            bytes: Box::new_uninit_slice(CHUNK),
            start: 0,
            end: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        let filled = &self.bytes[self.start..self.end];
        // SAFETY: `start..end` was written by the socket read that set `end`.
        unsafe { &*(filled as *const [MaybeUninit<u8>] as *const [u8]) }
    }

    /// Move as much as fits into `out`.
    fn take_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.filled().len().min(out.remaining());
        out.put_slice(&self.filled()[..n]);
        self.start += n;
    }
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        ReadAhead { inner, chunk: None }
    }
}

/// A socket that can tell whether a read would find bytes, without reading.
pub trait ReadReady {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

impl ReadReady for tokio::io::DuplexStream {
    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + ReadReady + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A quiet socket is found out before a chunk is allocated for it:
        // idle connections are polled often (every time they are written to).
        if this.chunk.is_none() {
            std::task::ready!(this.inner.poll_read_ready(cx))?;
        }
        let chunk = this.chunk.get_or_insert_with(Chunk::new);
        if chunk.start == chunk.end {
            let mut fill = ReadBuf::uninit(&mut chunk.bytes);
            match Pin::new(&mut this.inner).poll_read(cx, &mut fill) {
                Poll::Ready(Ok(())) => {
                    chunk.start = 0;
                    chunk.end = fill.filled().len();
                }
                // Nothing to read (or the read failed): give the chunk back
                // rather than hold it while the connection waits.
                other => {
                    this.chunk = None;
                    return other;
                }
            }
        }
        chunk.take_into(out);
        if chunk.start == chunk.end {
            this.chunk = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_get_every_byte_and_a_quiet_socket_holds_no_chunk() {
        let (mut peer, ours) = tokio::io::duplex(64 << 10);
        let mut reader = ReadAhead::new(ours);
        let sent: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8).collect();
        peer.write_all(&sent).await.unwrap();

        let mut got = Vec::new();
        let mut small = [0u8; 1000];
        while got.len() < sent.len() {
            let n = reader.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, sent);

        // Nothing more to read: the read is pending and the chunk is gone.
        let pending = poll_fn(|cx| {
            let mut buf = ReadBuf::new(&mut small);
            Poll::Ready(Pin::new(&mut reader).poll_read(cx, &mut buf).is_pending())
        })
        .await;
        assert!(pending);
        assert!(reader.chunk.is_none());

        drop(peer);
        assert_eq!(reader.read(&mut small).await.unwrap(), 0);
    }
}
