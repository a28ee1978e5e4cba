//! Reading a socket's frames: the socket's bytes into the protocol's
//! [`Decoder`] (`wshost_proto::decode`, which checks, joins and inflates),
//! with the process's in-flight budget ([`crate::budget`]) taken for large
//! frames.
//!
//! Buffers are sized by what is in flight: an idle connection holds none,
//! small frames are read in chunks, and a large frame straight into a
//! buffer of its own size (after taking that from the in-flight budget),
//! which becomes its message without a copy. Nothing is kept after a
//! message.

use crate::budget::{self, Charge};
use crate::transport::Stream;
use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::Message;
use wshost_proto::decode::{self, DecodeError, Decoder, Large};
use wshost_proto::deflate::Inflater;

/// Bytes asked of the socket at once when no large frame is in flight.
const CHUNK: usize = 8 << 10;

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
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a message's frames took from the in-flight budget.
#[derive(Debug, Default)]
pub struct Held {
    _charges: Vec<Charge>,
}

pub struct Reader {
    decoder: Decoder,
    /// The large frame being read, if any, and its charge.
    big: Option<(Large, Charge)>,
    /// What the large frames of the message under way took.
    charges: Vec<Charge>,
    /// Bytes read off the socket, ever: progress a timeout can see while
    /// a long message is still arriving.
    received: u64,
}

impl Reader {
    pub fn new(early: Vec<u8>, max_frame: usize, max_message: usize) -> Self {
        Reader {
            decoder: Decoder::new(&early, max_frame, max_message),
            big: None,
            charges: Vec::new(),
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
    /// the buffers for the next call.
    pub async fn next(&mut self, stream: &mut Stream) -> Result<Read, ReadError> {
        loop {
            if let Some((large, charge)) = self.big.take_if(|(big, _)| big.is_complete()) {
                self.charges.push(charge);
                match self.decoder.finish_large(large)? {
                    Some(read) => return Ok(self.charged(read)),
                    None => continue,
                }
            }
            if self.big.is_none() {
                if let Some(read) = self.decoder.parse()? {
                    self.decoder.release_idle_buffer();
                    return Ok(self.charged(read));
                }
                if let Some(len) = self.decoder.large_frame_ahead(CHUNK) {
                    let charge = budget::global().take(len).await;
                    let large = self.decoder.start_large().expect("a frame ahead");
                    self.big = Some((large, charge));
                    continue;
                }
            }
            // Ready first, then room: a quiet socket costs no buffer.
            let read = match &mut self.big {
                Some((big, _)) => {
                    // Never past the frame's end, whatever the capacity.
                    let missing = big.missing();
                    let mut payload = (&mut big.payload).limit(missing);
                    stream.read_ready(&mut payload, |_| {}).await
                }
                None => {
                    let room = |buf: &mut BytesMut| buf.reserve(CHUNK);
                    stream.read_ready(self.decoder.buffer(), room).await
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

    /// `read` with the charges of its message, if it ends one.
    fn charged(&mut self, read: decode::Read) -> Read {
        match read {
            decode::Read::Message(msg) => Read::Message(
                msg,
                Held {
                    _charges: std::mem::take(&mut self.charges),
                },
            ),
            decode::Read::Ping(data) => Read::Ping(data),
            decode::Read::Pong => Read::Pong,
            decode::Read::Close(close) => Read::Close(close),
        }
    }
}
