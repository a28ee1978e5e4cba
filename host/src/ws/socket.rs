//! An upgraded WebSocket as both worlds drive it: reading the peer's
//! messages ([`crate::ws::reader`]), writing what the connection's [`Outbox`]
//! holds, and the frames the host owes the peer (pongs, Close replies).
//!
//! Every frame the host sends is framed by [`crate::ws::frame`] (a burst of
//! queued frames goes out in as few writes as the socket takes, its small
//! frames gathered into one slice, and a frame published to many
//! connections is the same bytes for all) and, on a socket that agreed to
//! permessage-deflate, compressed on its way out ([`wshost_proto::deflate`]).
//!
//! What a socket's pump awaits on its common paths with arguments beyond
//! `self` (a read's handling, a write's frames, a ping's) is written as
//! `fn … -> impl Future` around an `async move` block, not as an `async
//! fn`: an `async fn` keeps its arguments twice in its future
//! (rust-lang/rust#62958), and these futures are laid out in every open
//! socket's task.

use crate::bindings::{CloseInfo, Error};
use crate::meters::RouteMeters;
use crate::net::transport::Stream;
use crate::ws::frame::{self, Kind};
use crate::ws::outbox::{Batch, Outbox};
use crate::ws::reader::{Held, Read, ReadError, Reader};
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use wshost_config::{Keepalive, Limits};
use wshost_proto::decode::DecodeError;
use wshost_proto::deflate::{self, Agreed, Inflater};

/// The longest reason a Close frame can carry (125-byte payload less the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// The reason of the 1001 Close frame sent when the server shuts down.
pub const GOING_AWAY: &str = "server shutting down";

/// The reason of the 1008 Close frame sent to a connection that was evicted.
pub const TOO_SLOW: &str = "too slow: queued messages were not taken";

/// What one read from the peer came to.
pub enum Incoming {
    /// A whole text or binary message, and what it holds of the in-flight
    /// budget until it is taken.
    Message(Message, Held),
    /// The peer's Close frame (code and reason, if it carried them); the
    /// reply has been sent.
    Close(Option<CloseInfo>),
    /// The peer went away without a Close frame.
    Gone,
    /// The peer broke the protocol or the socket failed; the peer has been
    /// sent the Close code in `code` when it could still hear it.
    Failed { error: Error, code: u16 },
}

pub struct Socket {
    stream: Stream,
    reader: Reader,
    pub outbox: Arc<Outbox>,
    /// Its timeouts and keepalive: one word, where the copies of two
    /// timeouts took four in every socket (and its task a keepalive's four).
    limits: Arc<Limits>,
    /// The window bits to compress with, on a socket that agreed to deflate.
    deflate: Option<u8>,
    /// Its route's counters.
    meters: RouteMeters,
    /// Reads have ended: the peer closed or the socket failed.
    pub peer_gone: bool,
    /// The host has sent a Close frame of its own: no data frame may follow.
    pub closing: bool,
    /// A write was abandoned half-way: the stream can carry nothing more and
    /// the TCP connection must be dropped.
    pub broken: bool,
}

impl Socket {
    /// Send the 101 `response` and take the connection over as a WebSocket;
    /// `early` holds what the client sent after its request head, `deflate`
    /// what was agreed of permessage-deflate.
    pub async fn open(
        mut stream: Stream,
        (response, early): (&[u8], Vec<u8>),
        deflate: Option<Agreed>,
        limits: &Arc<Limits>,
        (outbox, meters): (Arc<Outbox>, RouteMeters),
    ) -> std::io::Result<Self> {
        let sent = async {
            stream.write_all(response).await?;
            stream.flush().await
        };
        tokio::time::timeout(limits.write_timeout, sent)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))?;
        let mut reader = Reader::new(early, limits.max_message_size, limits.max_message_size);
        if let Some(agreed) = &deflate {
            reader.inflate_with(Inflater::new(agreed));
        }
        Ok(Socket {
            stream,
            reader,
            outbox,
            limits: limits.clone(),
            deflate: deflate.map(|agreed| agreed.server_bits),
            meters,
            peer_gone: false,
            closing: false,
            broken: false,
        })
    }

    /// The socket compresses what it sends (permessage-deflate agreed).
    pub fn compresses(&self) -> bool {
        self.deflate.is_some()
    }

    pub fn close_timeout(&self) -> std::time::Duration {
        self.limits.close_timeout
    }

    /// Pings to a quiet peer, and when a silent one is dropped.
    pub fn keepalive(&self) -> Keepalive {
        self.limits.keepalive()
    }

    /// The next thing from the peer, raw. Cancel-safe: give what it
    /// returns to [`Socket::incoming`], which is not.
    pub fn next_read(&mut self) -> impl Future<Output = Result<Read, ReadError>> + Send + '_ {
        // Not an `async fn`: another layer of future in every socket's task.
        self.reader.next(&mut self.stream)
    }

    /// Turn what [`Socket::next_read`] returned into what the guest sees; `None`
    /// for control frames the host handles itself (a ping is answered here).
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    pub fn incoming(
        &mut self,
        read: Result<Read, ReadError>,
    ) -> impl Future<Output = Option<Incoming>> + '_ {
        async move {
            match read {
                Ok(Read::Message(msg, held)) => {
                    self.meters.messages_in.increment(1);
                    self.meters.bytes_in.increment(msg.len() as u64);
                    Some(Incoming::Message(msg, held))
                }
                Ok(Read::Pong) => None,
                // Boxed, each: a reply to write, not every message's path (in
                // line, their writes took room in every socket's task).
                Ok(Read::Close(close)) => Some(Box::pin(self.peer_closed(close)).await),
                Ok(Read::Ping(payload)) => {
                    Box::pin(self.pong(payload)).await;
                    None
                }
                Err(e) => Some(Box::pin(self.read_failed(e)).await),
            }
        }
    }

    /// The peer's Close frame: reply now, whatever the guest does next
    /// (echoing the code, RFC 6455 §5.5.1), unless our own Close went first.
    async fn peer_closed(&mut self, close: Option<(u16, String)>) -> Incoming {
        if !self.closing {
            let reply = match &close {
                Some((code, _)) => frame::close(*code, ""),
                None => frame::encode_empty_close(),
            };
            self.closing = true;
            let _ = self.write_control(reply).await;
        }
        self.peer_gone = true;
        Incoming::Close(close.map(|(code, reason)| CloseInfo { code, reason }))
    }

    /// Answer the peer's ping, unless we are closing.
    async fn pong(&mut self, payload: Bytes) {
        if !self.closing {
            let _ = self
                .write_control(frame::encode(Kind::Pong, true, &payload))
                .await;
        }
    }

    /// Bytes read off the socket so far.
    pub fn bytes_received(&self) -> u64 {
        self.reader.received()
    }

    /// When the message under way must be done, if it took the in-flight
    /// budget's overdraft.
    pub fn overdraft_due(&self) -> Option<tokio::time::Instant> {
        self.reader.overdraft_due()
    }

    /// Bytes the peer has sent that wait unread in the kernel.
    pub fn unread(&self) -> usize {
        crate::net::transport::unread(self.stream.fd()).unwrap_or(0)
    }

    /// Write every frame the outbox holds, in as few writes as the socket
    /// takes ([`Stream::poll_write_chunks`]).
    pub async fn write_queued(&mut self) -> Result<(), Error> {
        let mut batch = self.outbox.take_all();
        if batch.is_empty() {
            return Ok(());
        }
        self.write_frames(&mut batch).await
    }

    /// Write `frames` (compressed first on a deflate socket). A connection
    /// evicted (or terminated) while the write waits for a peer that does
    /// not read is abandoned mid-write, as is one whose peer takes longer
    /// than the write timeout.
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    fn write_frames<'a>(
        &'a mut self,
        frames: &'a mut Batch,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        async move {
            if self.broken || self.peer_gone || self.closing {
                return Err(Error::PeerClosed);
            }
            if let Some(bits) = self.deflate {
                for frame in frames.iter_mut() {
                    *frame = deflate::compress_frame(frame, bits);
                }
            }
            self.write_raw(frames).await
        }
    }

    /// Ping the peer (keepalive).
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    pub fn ping(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        async move {
            self.write_control(frame::encode(Kind::Ping, true, b""))
                .await
        }
    }

    /// Write a control frame (a ping, a pong, a Close) even while closing.
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    fn write_control(&mut self, frame: Bytes) -> impl Future<Output = Result<(), Error>> + '_ {
        async move {
            if self.broken {
                return Err(Error::PeerClosed);
            }
            self.write_raw(&[frame]).await
        }
    }

    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    fn write_raw<'a>(
        &'a mut self,
        frames: &'a [Bytes],
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        async move {
            // Where the write stands: the first frame not wholly written, and
            // how much of it was.
            let mut at = (0, 0);
            let stream = &mut self.stream;
            // Most writes complete at once: no timer, and nothing in the
            // socket's task but these few words. Only a write that waits for
            // its peer pays for the watch over it (boxed: in line, it would
            // enlarge every socket's task).
            let at_once = std::future::poll_fn(|cx| {
                Poll::Ready(poll_write_all(stream, cx, frames, &mut at, None))
            })
            .await;
            let written = match at_once {
                Poll::Ready(written) => written,
                Poll::Pending => match Box::pin(self.finish_write(frames, at)).await {
                    Waited::Written(written) => written,
                    Waited::Abandoned => {
                        self.broken = true;
                        return Err(Error::PeerClosed);
                    }
                    Waited::TimedOut => {
                        tracing::debug!(
                            "the peer took no byte for {:?}: dropped",
                            self.limits.write_timeout
                        );
                        self.broken = true;
                        return Err(Error::PeerClosed);
                    }
                },
            };
            if written.is_ok() {
                self.meters.frames_out.increment(frames.len() as u64);
                let bytes: usize = frames.iter().map(Bytes::len).sum();
                self.meters.bytes_out.increment(bytes as u64);
            }
            written.map_err(|e| {
                if is_disconnect(&e) {
                    self.peer_gone = true;
                    Error::PeerClosed
                } else {
                    self.broken = true;
                    Error::Io(e.to_string())
                }
            })
        }
    }

    /// The rest of `frames`, from `at`, once the peer reads: abandoned if
    /// the connection is evicted or terminated meanwhile, or if the peer
    /// takes no byte for the write timeout.
    async fn finish_write(&mut self, frames: &[Bytes], mut at: (usize, usize)) -> Waited {
        // Bytes the peer has taken since: the write timeout is a time
        // without progress, not for the whole batch.
        let accepted = AtomicU64::new(0);
        let fd = self.stream.fd();
        let stream = &mut self.stream;
        let write =
            std::future::poll_fn(|cx| poll_write_all(stream, cx, frames, &mut at, Some(&accepted)));
        let peer = (&*self.outbox, &accepted, fd);
        wait_for_peer(std::pin::pin!(write), peer, self.limits.write_timeout).await
    }

    /// Send a Close frame (the guest's or the host's own).
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    pub fn send_close<'a>(
        &'a mut self,
        code: u16,
        reason: &'a str,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        async move {
            if self.broken || self.closing {
                return Err(Error::PeerClosed);
            }
            self.closing = true;
            self.write_control(frame::close(code, reason)).await
        }
    }

    /// The host ends the connection itself (1001 at shutdown, 1008 when
    /// evicted): send the peer `code`, giving up on a peer that does not
    /// take it within the close timeout.
    pub async fn host_close(&mut self, code: CloseCode, reason: &str) {
        let sent = tokio::time::timeout(
            self.limits.close_timeout,
            self.send_close(code.into(), reason),
        );
        if sent.await.is_err() {
            self.broken = true;
        }
    }

    /// The peer broke the protocol or the socket failed: tell the peer why
    /// with the RFC 6455 close code when it can still hear it.
    async fn read_failed(&mut self, e: ReadError) -> Incoming {
        self.peer_gone = true;
        let (code, error) = match e {
            // The peer vanished without a Close frame: it has gone, as in
            // the seed's `''`, and there is no one left to tell anything.
            ReadError::Eof => return Incoming::Gone,
            ReadError::Io(io) if is_disconnect(&io) => return Incoming::Gone,
            ReadError::Io(io) => {
                return Incoming::Failed {
                    error: Error::Io(io.to_string()),
                    code: CloseCode::Abnormal.into(),
                };
            }
            ReadError::Decode(DecodeError::TooLarge(why)) => {
                tracing::debug!("peer's message refused: {why}");
                (CloseCode::Size, Error::TooLarge)
            }
            ReadError::Decode(DecodeError::Utf8) => (
                CloseCode::Invalid,
                Error::Protocol("text message is not valid UTF-8".into()),
            ),
            ReadError::Decode(DecodeError::Protocol(why)) => {
                (CloseCode::Protocol, Error::Protocol(why))
            }
            // The server is short of memory for messages: try again later.
            ReadError::Overdue(_) => (CloseCode::Again, Error::Protocol(e.to_string())),
        };
        let reason = match &error {
            Error::Protocol(why) => truncate(why, MAX_CLOSE_REASON).to_string(),
            _ => "message too big".to_string(),
        };
        if !self.closing {
            self.closing = true;
            let timeout = self.limits.close_timeout;
            let close = self.write_control(frame::close(code.into(), &reason));
            let _ = tokio::time::timeout(timeout, close).await;
        }
        Incoming::Failed {
            error,
            code: code.into(),
        }
    }
}

/// Check a Close frame a guest asks for: a code an endpoint may send and a
/// reason that fits.
pub fn check_close(code: u16, reason: &str) -> Result<(), Error> {
    if !CloseCode::from(code).is_allowed() || code < 1000 {
        return Err(Error::Protocol(format!(
            "{code} is not a close code an endpoint may send"
        )));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(Error::Protocol(format!(
            "close reason is {} bytes; at most {MAX_CLOSE_REASON}",
            reason.len()
        )));
    }
    Ok(())
}

/// Write what is left of `frames` from `at` (the first frame not wholly
/// written, and how much of it was), as few syscalls as the socket allows;
/// `at` keeps the progress across polls, `accepted` counts the bytes.
fn poll_write_all(
    io: &mut Stream,
    cx: &mut std::task::Context<'_>,
    frames: &[Bytes],
    at: &mut (usize, usize),
    accepted: Option<&AtomicU64>,
) -> Poll<std::io::Result<()>> {
    let (first, offset) = at;
    while *first < frames.len() {
        let mut written = match io.poll_write_chunks(cx, &frames[*first..], *offset) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(written)) => written,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(accepted) = accepted {
            accepted.fetch_add(written as u64, Ordering::Relaxed);
        }
        while written > 0 {
            let left = frames[*first].len() - *offset;
            if written >= left {
                written -= left;
                *first += 1;
                *offset = 0;
            } else {
                *offset += written;
                written = 0;
            }
        }
    }
    // TLS records may wait in rustls until flushed.
    Pin::new(io).poll_flush(cx)
}

/// How a write that had to wait for its peer ended.
enum Waited {
    Written(std::io::Result<()>),
    /// The connection was evicted or terminated meanwhile.
    Abandoned,
    /// The peer read nothing for the write timeout.
    TimedOut,
}

/// Finish `write`, unless the connection is abandoned or the peer takes
/// longer than `timeout`.
async fn wait_for_peer(
    mut write: Pin<&mut impl Future<Output = std::io::Result<()>>>,
    (outbox, accepted, fd): (&Outbox, &AtomicU64, std::os::fd::RawFd),
    timeout: Duration,
) -> Waited {
    // What the peer has taken: bytes we wrote, and the kernel's queue to it
    // shrinking (with a large send buffer the kernel calls the socket
    // writable again only once much of it has drained).
    let progress = || {
        let unacked = crate::net::transport::unacknowledged(fd).unwrap_or(0);
        (accepted.load(Ordering::Relaxed), unacked)
    };
    let mut seen = progress();
    let alarm = tokio::time::sleep(timeout);
    let mut alarm = std::pin::pin!(alarm);
    loop {
        tokio::select! {
            biased;
            written = &mut write => return Waited::Written(written),
            _ = outbox.abandoned() => return Waited::Abandoned,
            _ = &mut alarm => {
                // Timed out only if the peer took no byte since the alarm
                // was set: a slow reader that reads is not a dead one.
                let now = progress();
                if now.0 == seen.0 && now.1 >= seen.1 {
                    return Waited::TimedOut;
                }
                seen = now;
                alarm.as_mut().reset(tokio::time::Instant::now() + timeout);
            }
        }
    }
}

/// Resolves once `flag` is true; never, if its sender goes first.
pub async fn turned_true(flag: &mut watch::Receiver<bool>) {
    // A loop over `changed`, not `wait_for`: this future waits in every
    // socket's task (144 bytes this way, 160 with `wait_for`).
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Cut `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::{Stream, poll_write_all, truncate};
    use crate::net::transport::tcp_pair;
    use bytes::Bytes;
    use tokio::io::AsyncReadExt;

    #[test]
    fn truncate_keeps_char_boundaries() {
        assert_eq!(truncate("привет", 3), "п");
        assert_eq!(truncate("ok", 10), "ok");
    }

    /// Small frames gathered into one slice, larger ones between them
    /// written as they are, and partial writes (a small send buffer, a
    /// slow reader) resumed mid-frame: the peer reads every byte, in order.
    #[tokio::test]
    async fn queued_frames_arrive_whole_and_in_order() {
        let (tcp, mut peer) = tcp_pair(Some(4096)).await;
        let mut frames: Vec<Bytes> = (0..300u32)
            .map(|i| Bytes::from(format!("frame {i};").repeat(1 + i as usize % 7)))
            .collect();
        frames.insert(150, Bytes::from(vec![b'L'; 200 << 10]));
        frames.insert(151, Bytes::from_static(b"x"));
        // Frames of 3 KiB: a write gathers two, the rest go as they are.
        for at in [20, 22, 23, 24, 200] {
            frames.insert(at, Bytes::from(vec![b'0' + at as u8 % 10; 3 << 10]));
        }
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 1000];
            while got.len() < expected.len() {
                let n = peer.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed after {} bytes", got.len());
                got.extend_from_slice(&chunk[..n]);
                tokio::task::yield_now().await;
            }
            assert!(got == expected, "the bytes differ");
        });
        let mut io = Stream::Plain(tcp);
        let mut at = (0, 0);
        std::future::poll_fn(|cx| poll_write_all(&mut io, cx, &frames, &mut at, None))
            .await
            .unwrap();
        reader.await.unwrap();
    }
}
