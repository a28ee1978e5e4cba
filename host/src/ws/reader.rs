//! Reading a socket's frames: the socket's bytes into the protocol's
//! [`Decoder`] (`wshost_proto::decode`, which checks, joins and inflates),
//! each byte of a message under way charged to the process's in-flight
//! budget ([`crate::ws::budget`]) as it arrives.
//!
//! Buffers are sized by what is in flight: an idle connection holds none,
//! small frames are read in chunks, and a large frame straight into a
//! buffer of its own size, slice by charged slice, which becomes its
//! message without a copy. Nothing is kept after a message.

use crate::net::transport::Stream;
use crate::ws::budget::{self, Charge, Overdraft};
use bytes::{BufMut, Bytes};
use std::time::Duration;
use tokio::time::Instant;
use tungstenite::Message;
use wshost_proto::decode::{self, DecodeError, Decoder, Large};
use wshost_proto::deflate::Inflater;

/// Bytes asked of the socket at once when no large frame is in flight.
const CHUNK: usize = 8 << 10;
/// Bytes of a large frame charged, then read, at a time: what a connection
/// in the middle of a large frame may hold of the budget beyond what it has
/// read (64 connections that announced 16 MiB frames and stopped: 4 MiB).
const SLICE: usize = 64 << 10;

/// One thing the peer sent.
#[derive(Debug)]
pub enum Read {
    /// A whole message, and what its frames took from the in-flight budget
    /// (to be dropped once the message's bytes are taken).
    Message(Message, Held),
    Ping(Bytes),
    Pong,
    /// A Close frame: its code and reason, if it carried them.
    Close(Option<(u16, String)>),
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer's bytes broke the protocol or a limit (its close code:
    /// [`DecodeError::close_code`]).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The peer closed TCP without a Close frame.
    #[error("the peer went away")]
    Eof,
    /// The message that took the budget's overdraft was not finished in
    /// time (close with 1008).
    #[error("a message that took the overdraft was not finished within {0:?}")]
    Overdue(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a message's bytes took from the in-flight budget.
#[derive(Debug, Default)]
pub struct Held {
    _charge: Charge,
}

pub struct Reader {
    decoder: Decoder,
    /// The large frame being read, if any.
    /// (Boxed, as the overdraft below: rare, and kept in every socket.)
    big: Option<Box<Large>>,
    /// What the message under way holds of the budget: its bytes being
    /// assembled, its large frame's bytes read, and the slice about to be.
    charge: Charge,
    /// The budget's overdraft, while the message under way uses it, and
    /// when that message must be done.
    overdraft: Option<Box<(Overdraft, Instant)>>,
    /// Bytes read off the socket, ever: progress a timeout can see while
    /// a long message is still arriving.
    received: u64,
}

impl Reader {
    pub fn new(early: Vec<u8>, max_frame: usize, max_message: usize) -> Self {
        Reader {
            decoder: Decoder::new(&early, max_frame, max_message),
            big: None,
            charge: Charge::default(),
            overdraft: None,
            received: 0,
        }
    }

    /// Bytes read off the socket so far (any byte counts as the peer heard).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Inflate messages sent compressed (RSV1), as negotiated.
    pub fn inflate_with(&mut self, inflater: Inflater) {
        self.decoder.inflate_with(inflater);
    }

    /// The next thing the peer sends. Cancel-safe: what was read waits in
    /// the buffers for the next call, what was charged in [`Reader::charge`].
    ///
    /// Not an `async fn` (nor are the reads below it): this future sits in
    /// every idle socket's task, and an `async fn` keeps its arguments twice
    /// (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    pub fn next<'a>(
        &'a mut self,
        stream: &'a mut Stream,
    ) -> impl Future<Output = Result<Read, ReadError>> + Send + 'a {
        async move {
            loop {
                if let Some(large) = self.big.take_if(|big| big.is_complete()) {
                    match self.decoder.finish_large(*large)? {
                        Some(read) => return Ok(self.charged(read)),
                        None => continue,
                    }
                }
                if self.big.is_none() {
                    if let Some(read) = self.decoder.parse()? {
                        self.decoder.release_idle_buffer();
                        return Ok(self.charged(read));
                    }
                    // Fragments joined so far are charged before more is read.
                    self.cover(self.decoder.assembling()).await?;
                    if self.decoder.large_frame_ahead(CHUNK).is_some() {
                        self.big = self.decoder.start_large().map(Box::new);
                        continue;
                    }
                }
                // A large frame's next slice is charged before it is read.
                let slice = match &self.big {
                    Some(big) => {
                        let under_way = self.decoder.assembling() + big.payload.len();
                        let slice = big.missing().min(SLICE);
                        self.cover(under_way + slice).await?;
                        Some(slice)
                    }
                    None => None,
                };
                // Ready first, then room: a quiet socket costs no buffer. A
                // message that took the overdraft is held to its deadline here
                // too (the socket's task arms its own timer only between reads);
                // its timer is boxed, out of every socket's task.
                let read = match self.overdraft_due() {
                    None => self.read_some(stream, slice).await,
                    Some(due) => {
                        Box::pin(tokio::time::timeout_at(due, self.read_some(stream, slice)))
                            .await
                            .map_err(|_| ReadError::Overdue(budget::OVERDRAFT_DEADLINE))?
                    }
                };
                let read = match read {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // Nothing came after all: wait again holding no chunk
                        // (every socket that has read a message would keep 8 KiB).
                        self.decoder.release_idle_buffer();
                        continue;
                    }
                    read => read?,
                };
                if read == 0 {
                    return Err(ReadError::Eof);
                }
                self.received += read as u64;
            }
        }
    }

    /// Read what is ready: into the large frame's payload, at most
    /// `slice` bytes, or into the decoder's buffer. A `poll_fn`: its
    /// future is its three references.
    fn read_some<'a>(
        &'a mut self,
        stream: &'a mut Stream,
        slice: Option<usize>,
    ) -> impl Future<Output = std::io::Result<usize>> + Send + 'a {
        std::future::poll_fn(move |cx| match (&mut self.big, slice) {
            (Some(big), Some(slice)) => {
                // Never past the charged slice, whatever the capacity.
                let mut payload = (&mut big.payload).limit(slice);
                stream.poll_read_when_ready(cx, &mut payload, |_| {})
            }
            _ => stream.poll_read_when_ready_sized(cx, self.decoder.buffer(), CHUNK),
        })
    }

    /// Hold at least `bytes` of the budget for the message under way:
    /// charge what is missing, waiting in line for it, or (while waiting)
    /// take the overdraft and charge the rest of the message to its reserve.
    /// Cancel-safe: what was taken is kept in `self`.
    #[allow(clippy::manual_async_fn)] // an `async fn` holds its arguments twice
    fn cover(&mut self, bytes: usize) -> impl Future<Output = Result<(), ReadError>> + Send + '_ {
        async move {
            let missing = bytes.saturating_sub(self.charge.bytes());
            if missing == 0 {
                return Ok(());
            }
            if self.overdraft.is_none()
                && let Some(charge) = budget::global().try_take(missing)
            {
                self.charge.merge(charge);
                return Ok(());
            }
            // Boxed: waiting for the budget is rare, and its futures would take
            // room in every socket's task for its whole life. (A message that
            // holds the overdraft comes here for each of its slices.)
            Box::pin(self.cover_waiting(missing)).await
        }
    }

    /// [`Reader::cover`] when the budget has no room for `missing` now.
    async fn cover_waiting(&mut self, missing: usize) -> Result<(), ReadError> {
        let budget = budget::global();
        if self.overdraft.is_none() {
            tracing::debug!("a read of {missing} bytes waits for the in-flight budget");
            // Only a connection already holding part of its message may
            // take the overdraft (one that holds nothing waits in line: it
            // pins nothing meanwhile); the budget first, when both are free.
            let holds = self.charge.bytes() > 0;
            tokio::select! {
                biased;
                charge = budget.take(missing) => {
                    self.charge.merge(charge);
                    return Ok(());
                }
                overdraft = budget.overdraft(), if holds => {
                    tracing::debug!("a message under way takes the in-flight budget's overdraft");
                    let due = Instant::now() + budget::OVERDRAFT_DEADLINE;
                    self.overdraft = Some(Box::new((overdraft, due)));
                }
            }
        }
        let Some((overdraft, due)) = self.overdraft.as_deref() else {
            unreachable!("taken above");
        };
        let reserve = tokio::time::timeout_at(*due, budget.take_reserve(overdraft, missing))
            .await
            .map_err(|_| ReadError::Overdue(budget::OVERDRAFT_DEADLINE))?;
        self.charge.merge(reserve);
        Ok(())
    }

    /// When the message that took the overdraft must be done (the socket's
    /// task holds it to that, with [`ReadError::Overdue`]).
    pub fn overdraft_due(&self) -> Option<Instant> {
        self.overdraft.as_deref().map(|(_, due)| *due)
    }

    /// `read` with the charge of its message, if it ends one (the
    /// overdraft, if the message took it, is given up).
    fn charged(&mut self, read: decode::Read) -> Read {
        match read {
            decode::Read::Message(msg) => {
                self.overdraft = None;
                let held = Held {
                    _charge: std::mem::take(&mut self.charge),
                };
                Read::Message(msg, held)
            }
            decode::Read::Ping(data) => Read::Ping(data),
            decode::Read::Pong => Read::Pong,
            decode::Read::Close(close) => Read::Close(close),
        }
    }
}
