//! The byte stream under a connection: plain TCP, or TLS over it
//! (`--tls-cert`, [`crate::net::tls`]). Everything above reads and writes a
//! [`Stream`] and does not know which.
//!
//! Reading waits for bytes *before* it asks for room ([`Stream::poll_read_when_ready`]):
//! an idle plain socket then holds no buffer of ours at all, and an idle TLS
//! socket only what rustls keeps for its records.

use bytes::{BufMut, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum Stream {
    Plain(TcpStream),
    /// Boxed: rustls's connection state is large, and the enum sits in
    /// every connection's task.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Once the peer has sent something (or closed), call `make_room` and
    /// move what is ready into `buf`'s spare room, at most the room
    /// `make_room` left. Ready with how many bytes; 0 when the peer closed;
    /// `WouldBlock` when the readiness was stale (nothing came: the caller
    /// may give the room back before it waits again). Pending (the task
    /// woken when bytes come) until then, having taken nothing.
    ///
    /// A poll, not an `async fn`: the read's future is laid out in every
    /// idle socket's task, and a `poll_fn` over this holds its few
    /// references and nothing else.
    pub fn poll_read_when_ready<B: BufMut>(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut B,
        make_room: impl FnOnce(&mut B),
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Plain(tcp) => {
                // The socket's reader waker slot, not a waiter in the future:
                // a `readable()` future is 112 bytes in every socket's task.
                // Unlike `readable()`, it spends tokio's cooperative budget
                // (a flooding peer's task yields to the others), and a read
                // cancelled by the socket's select leaves its waker behind:
                // the next bytes wake the task once for nothing.
                std::task::ready!(tcp.poll_read_ready(cx))?;
                make_room(buf);
                Poll::Ready(read_clearing(tcp, buf))
            }
            Stream::Tls(tls) => {
                // Decrypted bytes wait in rustls's buffer, which we copy from.
                let data = std::task::ready!(Pin::new(&mut **tls).poll_fill_buf(cx))?;
                if data.is_empty() {
                    return Poll::Ready(Ok(0));
                }
                make_room(buf);
                let n = data.len().min(buf.chunk_mut().len());
                buf.put_slice(&data[..n]);
                Pin::new(&mut **tls).consume(n);
                Poll::Ready(Ok(n))
            }
        }
    }
}

/// Most reads hold a small message or two: read into this thread's
/// scratch chunk and copied out at their own size, they cost one small
/// allocation (from the allocator's per-thread cache) instead of a chunk
/// taken and given back per message (glibc serves 8 KiB from its bins).
/// Writes gather small frames in it ([`Stream::poll_write_chunks`]). It is
/// borrowed within one synchronous call only (a read or a write), never
/// across an `.await`, so no borrow ever meets another.
const SCRATCH: usize = 8 << 10;

thread_local! {
    static SCRATCH_CHUNK: std::cell::RefCell<Box<[u8; SCRATCH]>> =
        std::cell::RefCell::new(Box::new([0; SCRATCH]));
}

impl Stream {
    /// [`Stream::poll_read_when_ready`] into `buf`, at most `chunk` bytes (up to
    /// [`SCRATCH`]): into an empty buffer on a plain socket through this
    /// thread's scratch chunk, so `buf` is allocated at the size that came.
    pub fn poll_read_when_ready_sized(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            Stream::Plain(tcp) if buf.is_empty() && chunk <= SCRATCH => {
                // As in `poll_read_when_ready`: the reader waker slot.
                std::task::ready!(tcp.poll_read_ready(cx))?;
                let read = SCRATCH_CHUNK.try_with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let mut room = &mut scratch[..chunk];
                    let n = read_clearing(tcp, &mut room)?;
                    buf.extend_from_slice(&scratch[..n]);
                    Ok(n)
                });
                Poll::Ready(match read {
                    Ok(read) => read,
                    // The thread is exiting: read as any buffer does.
                    Err(_) => {
                        buf.reserve(chunk);
                        read_clearing(tcp, buf)
                    }
                })
            }
            _ => self.poll_read_when_ready(cx, buf, |buf| buf.reserve(chunk)),
        }
    }
}

impl Stream {
    /// One write of `chunks`, in order, the first from `offset` on: the
    /// count of bytes taken. On a plain socket, the leading chunks that fit
    /// this thread's scratch chunk together (several small frames: a
    /// fan-out queues dozens to each subscriber) are copied there and go
    /// out as the write's first slice, the rest as the next ones: the
    /// kernel's copy pays more per slice than the copy here costs. One
    /// `send`, or one `writev` of up to `MAX_SLICES` slices. A TLS stream
    /// takes the chunks as they are.
    pub fn poll_write_chunks(
        &mut self,
        cx: &mut Context<'_>,
        chunks: &[Bytes],
        offset: usize,
    ) -> Poll<io::Result<usize>> {
        let nth = |i: usize| part(chunks, offset, i);
        if let Stream::Plain(tcp) = self
            && chunks.len() > 1
            && let gathered = fitting(chunks, offset)
            && gathered > 1
        {
            // Copy only for a write the socket can take now.
            std::task::ready!(tcp.poll_write_ready(cx))?;
            let sent = SCRATCH_CHUNK.try_with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut at = 0;
                for i in 0..gathered {
                    let part = nth(i);
                    scratch[at..at + part.len()].copy_from_slice(part);
                    at += part.len();
                }
                // Not `nth`: chained after the scratch slice, these take
                // its shorter lifetime, which a closure made outside cannot.
                let rest = (gathered..chunks.len()).map(|i| part(chunks, offset, i));
                self.poll_write_slices(cx, std::iter::once(&scratch[..at]).chain(rest))
            });
            // The thread is exiting: write them as they are.
            if let Ok(sent) = sent {
                return sent;
            }
        }
        self.poll_write_slices(cx, (0..chunks.len()).map(nth))
    }

    /// One write of the first [`MAX_SLICES`] of `parts` (empty ones
    /// skipped): a `send` for one, else a `writev`.
    fn poll_write_slices<'a>(
        &mut self,
        cx: &mut Context<'_>,
        parts: impl Iterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
        let mut count = 0;
        for part in parts.filter(|p| !p.is_empty()).take(MAX_SLICES) {
            slices[count] = io::IoSlice::new(part);
            count += 1;
        }
        match count {
            // One slice: `send`, cheaper in the kernel than a one-slice `writev`.
            1 => Pin::new(self).poll_write(cx, &slices[0]),
            _ => Pin::new(self).poll_write_vectored(cx, &slices[..count]),
        }
    }
}

/// Chunk `i` of `chunks` as a write takes it: the first from `offset` on.
fn part(chunks: &[Bytes], offset: usize, i: usize) -> &[u8] {
    let chunk = &chunks[i][..];
    if i == 0 { &chunk[offset..] } else { chunk }
}

/// How many of the leading chunks of `chunks` (the first from `offset` on)
/// fit the scratch chunk together.
fn fitting(chunks: &[Bytes], offset: usize) -> usize {
    let mut bytes = 0;
    (0..chunks.len())
        .take_while(|&i| {
            bytes += part(chunks, offset, i).len();
            bytes <= SCRATCH
        })
        .count()
}

/// Slices per `writev` (Linux takes up to 1024). They live on the stack of
/// one poll only: as part of a write's future they would sit (1 KiB) in
/// every connection's task, idle or not.
const MAX_SLICES: usize = 64;

/// One read of what `tcp` holds into `buf`'s spare room. A read that
/// fills less than the room has drained the socket: its readiness is
/// cleared, so the next wait sleeps instead of making a `recv` that finds
/// nothing (tokio's own `poll_read` does the same, tokio#5866; its
/// `try_read_buf` does not). With edge-triggered epoll that is safe: bytes
/// that arrive after the read raise a new edge, and tokio ignores a clear
/// older than the readiness it has since seen. Measured (echo 32 B, 64
/// connections, one core): one `recvfrom` returning `EAGAIN` per message
/// before, none after.
fn read_clearing<B: BufMut>(tcp: &TcpStream, buf: &mut B) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let mut got = 0;
    let read = tcp.try_io(tokio::io::Interest::READABLE, || {
        let room = buf.chunk_mut();
        let len = room.len();
        // SAFETY: `room` is `len` writable bytes owned by `buf`; `recv`
        // writes at most `len` of them, and only the `n` it reports are
        // marked initialised below.
        let n = unsafe { libc::recv(fd, room.as_mut_ptr().cast(), len, 0) };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        // SAFETY: `recv` initialised the first `n` bytes of the room.
        unsafe { buf.advance_mut(n) };
        got = n;
        if n > 0 && n < len {
            // Drained: `WouldBlock` makes `try_io` clear the readiness.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        read => read,
    }
}

impl Stream {
    /// The socket's descriptor, for [`unacknowledged`] while a write holds
    /// the stream.
    pub fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Stream::Plain(tcp) => tcp.as_raw_fd(),
            Stream::Tls(tls) => tls.get_ref().0.as_raw_fd(),
        }
    }
}

/// Bytes the peer has sent that wait in socket `fd`'s kernel buffer, not
/// yet read (`FIONREAD`): they grow while we do not read and the peer
/// talks, and stay put when the peer is silent.
pub fn unread(fd: std::os::fd::RawFd) -> Option<usize> {
    #[cfg(target_os = "linux")]
    return queue_len(fd, libc::FIONREAD);
    #[cfg(not(target_os = "linux"))]
    return queue_len(fd, 0);
}

/// Bytes written to socket `fd` and not yet acknowledged by the peer
/// (`TIOCOUTQ`): they fall as the peer reads, however rarely the kernel
/// says the socket is writable again (with a large send buffer, seconds
/// apart).
pub fn unacknowledged(fd: std::os::fd::RawFd) -> Option<usize> {
    #[cfg(target_os = "linux")]
    return queue_len(fd, libc::TIOCOUTQ);
    #[cfg(not(target_os = "linux"))]
    return queue_len(fd, 0);
}

/// One of socket `fd`'s queue lengths, asked of the kernel by `request`;
/// `None` where it cannot say (elsewhere than Linux, only the bytes we
/// read and write count as progress).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn queue_len(fd: std::os::fd::RawFd, request: libc::c_ulong) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        let mut len: libc::c_int = 0;
        // SAFETY: both requests write one int through the pointer, which is
        // valid; a descriptor that is not a TCP socket makes them fail.
        let done = unsafe { libc::ioctl(fd, request, &mut len) };
        (done == 0).then(|| usize::try_from(len).unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    None
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// TLS records may wait in rustls until flushed; TCP has nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    /// On TLS, a close_notify first, then the TCP write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}

/// A connected pair on loopback, for tests: ours and the peer's. Ours
/// sends through a buffer of `send_buffer` bytes when given (writes then
/// stop partway).
#[cfg(test)]
pub(crate) async fn tcp_pair(send_buffer: Option<u32>) -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes).unwrap();
    }
    let (ours, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    (ours.unwrap(), accepted.unwrap().0)
}

#[cfg(test)]
mod tests {
    use super::{Stream, tcp_pair};
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    /// One `poll_write_chunks` on a fresh socket; what the peer got.
    async fn write_once(chunks: &[Bytes], offset: usize) -> (usize, Vec<u8>) {
        let (ours, mut peer) = tcp_pair(None).await;
        let mut io = Stream::Plain(ours);
        let written = std::future::poll_fn(|cx| io.poll_write_chunks(cx, chunks, offset))
            .await
            .unwrap();
        drop(io);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        (written, got)
    }

    #[tokio::test]
    async fn small_chunks_go_out_at_once_from_the_offset() {
        let chunks = [&b"first"[..], b"second", b"third"].map(Bytes::from_static);
        assert_eq!(
            write_once(&chunks, 2).await,
            (14, b"rstsecondthird".to_vec())
        );
    }

    #[tokio::test]
    async fn gathered_chunks_lead_the_larger_ones() {
        let large = Bytes::from(vec![b'L'; 9 << 10]);
        let chunks = [
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cd"),
            large.clone(),
        ];
        let (written, got) = write_once(&chunks, 1).await;
        let expected = [&b"bcd"[..], &large].concat();
        // One write took the gathered slice and (some of) the large one.
        assert!(written > 3 && written <= expected.len(), "{written}");
        assert!(got == expected[..written]);
    }
}
