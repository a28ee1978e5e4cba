//! What the peer sends, parsed (RFC 6455 §5): frames unmasked and checked,
//! fragments joined into whole messages, compressed messages inflated
//! ([`crate::deflate`]), control frames handed up as they come.
//!
//! Buffers are sized by what is in flight: an idle connection holds none,
//! small frames are read in chunks, and a large frame straight into a
//! buffer of its own size (after taking that from the process's in-flight
//! budget, [`crate::budget`]), which becomes its message without a copy.
//! Nothing is kept after a message.

use crate::budget::{self, Charge};
use crate::deflate::{InflateError, Inflater};
use crate::transport::Stream;
use crate::utf8::Utf8Fragments;
use bytes::{Buf, Bytes, BytesMut};
use std::io::Cursor;
use tungstenite::Message;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

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
    /// The peer broke the protocol (close with 1002).
    #[error("{0}")]
    Protocol(String),
    /// Text that is not UTF-8 (close with 1007).
    #[error("text is not valid UTF-8")]
    Utf8,
    /// A frame or message over the limit (close with 1009).
    #[error("{0}")]
    TooLarge(String),
    /// The peer closed TCP without a Close frame.
    #[error("the peer went away")]
    Eof,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A fragmented message being received.
struct Partial {
    text: bool,
    compressed: bool,
    data: BytesMut,
    utf8: Utf8Fragments,
    /// What its frames took from the in-flight budget.
    charges: Vec<Charge>,
}

/// What a message's frames took from the in-flight budget.
#[derive(Debug, Default)]
pub struct Held {
    _charges: Vec<Charge>,
}

/// A large frame being read straight into a buffer of its own size, which
/// becomes its message's bytes without a copy.
struct Big {
    header: FrameHeader,
    payload: Vec<u8>,
    len: usize,
    charge: Charge,
}

pub struct Reader {
    buf: BytesMut,
    partial: Option<Partial>,
    max_frame: usize,
    max_message: usize,
    /// Set when permessage-deflate was negotiated.
    inflater: Option<Inflater>,
    /// The large frame being read, if any.
    big: Option<Big>,
}

impl Reader {
    pub fn new(early: Vec<u8>, max_frame: usize, max_message: usize) -> Self {
        Reader {
            buf: BytesMut::from(&early[..]),
            partial: None,
            max_frame,
            max_message,
            inflater: None,
            big: None,
        }
    }

    /// Inflate messages sent compressed (RSV1), as negotiated.
    pub fn inflate_with(&mut self, inflater: Inflater) {
        self.inflater = Some(inflater);
    }

    /// The next thing the peer sends. Cancel-safe: what was read waits in
    /// the buffers for the next call.
    pub async fn next(&mut self, stream: &mut Stream) -> Result<Read, ReadError> {
        loop {
            if let Some(big) = self.big.take_if(|big| big.payload.len() == big.len) {
                let Big {
                    header,
                    mut payload,
                    charge,
                    ..
                } = big;
                if let Some(mask) = header.mask {
                    unmask(&mut payload, mask);
                }
                match self.frame(&header, Bytes::from(payload), Some(charge))? {
                    Some(read) => return Ok(read),
                    None => continue,
                }
            }
            if self.big.is_none() {
                if let Some(read) = self.parse()? {
                    if self.buf.is_empty() {
                        // An idle connection keeps no buffer.
                        self.buf = BytesMut::new();
                    }
                    return Ok(read);
                }
                if let Some(len) = self.large_frame_ahead() {
                    let charge = budget::global().take(len).await;
                    self.start_big(len, charge);
                    continue;
                }
            }
            // Ready first, then room: a quiet socket costs no buffer.
            let read = match &mut self.big {
                Some(big) => stream.read_ready(&mut big.payload, |_| {}).await,
                None => {
                    let room = |buf: &mut BytesMut| buf.reserve(CHUNK);
                    stream.read_ready(&mut self.buf, room).await
                }
            };
            let read = match read {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Nothing came after all: wait again holding no chunk
                    // (every socket that has read a message would keep 8 KiB).
                    if self.buf.is_empty() {
                        self.buf = BytesMut::new();
                    }
                    continue;
                }
                read => read?,
            };
            if read == 0 {
                return Err(ReadError::Eof);
            }
        }
    }

    /// The payload size of a frame whose (checked) header is buffered and
    /// whose payload is too large to wait for in the chunk buffer.
    fn large_frame_ahead(&self) -> Option<usize> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (_, len) = FrameHeader::parse(&mut cursor).ok()??;
        let head = cursor.position() as usize;
        let len = len as usize;
        (len > CHUNK && self.buf.len() < head + len).then_some(len)
    }

    /// Move the large frame ahead into a buffer of its own.
    fn start_big(&mut self, len: usize, charge: Charge) {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (header, _) = FrameHeader::parse(&mut cursor)
            .ok()
            .flatten()
            .expect("parsed by large_frame_ahead");
        self.buf.advance(cursor.position() as usize);
        let mut payload = Vec::with_capacity(len);
        payload.extend_from_slice(&self.buf);
        self.buf = BytesMut::new();
        self.big = Some(Big {
            header,
            payload,
            len,
            charge,
        });
    }

    /// The next thing whole in the buffer, if any.
    fn parse(&mut self) -> Result<Option<Read>, ReadError> {
        loop {
            let mut cursor = Cursor::new(&self.buf[..]);
            let Some((header, len)) =
                FrameHeader::parse(&mut cursor).map_err(|e| ReadError::Protocol(e.to_string()))?
            else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            self.check(&header, len)?;
            let len = len as usize;
            if self.buf.len() < head + len {
                return Ok(None);
            }
            self.buf.advance(head);
            let mut payload = self.buf.split_to(len);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            if let Some(read) = self.frame(&header, payload.freeze(), None)? {
                return Ok(Some(read));
            }
        }
    }

    /// Check a frame's header before its payload is awaited.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), ReadError> {
        let protocol = |why: &str| Err(ReadError::Protocol(why.into()));
        if header.mask.is_none() {
            return protocol("client frames must be masked");
        }
        if header.rsv2 || header.rsv3 {
            return protocol("reserved bits are set");
        }
        match header.opcode {
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                return protocol("unknown opcode");
            }
            OpCode::Control(_) => {
                if !header.is_final {
                    return protocol("control frames cannot be fragmented");
                }
                if len > 125 {
                    return protocol("control frames carry at most 125 bytes");
                }
                if header.rsv1 {
                    return protocol("reserved bits are set");
                }
            }
            OpCode::Data(Data::Continue) => {
                if self.partial.is_none() {
                    return protocol("continuation without a fragmented message");
                }
                if header.rsv1 {
                    return protocol("RSV1 set on a continuation frame");
                }
            }
            OpCode::Data(_) => {
                if self.partial.is_some() {
                    return protocol("a new message before the fragmented one ended");
                }
                if header.rsv1 && self.inflater.is_none() {
                    return protocol("reserved bits are set");
                }
            }
        }
        if len > self.max_frame as u64 {
            return Err(ReadError::TooLarge(format!(
                "a frame of {len} bytes; at most {}",
                self.max_frame
            )));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len());
        if so_far as u64 + len > self.max_message as u64 {
            return Err(ReadError::TooLarge(format!(
                "a message of over {} bytes",
                self.max_message
            )));
        }
        Ok(())
    }

    /// What a whole, checked, unmasked frame comes to; `None` for a
    /// fragment that does not end its message.
    fn frame(
        &mut self,
        header: &FrameHeader,
        payload: Bytes,
        charge: Option<Charge>,
    ) -> Result<Option<Read>, ReadError> {
        let read = match header.opcode {
            OpCode::Control(Control::Ping) => Read::Ping(payload),
            OpCode::Control(Control::Pong) => Read::Pong,
            OpCode::Control(_) => Read::Close(close_payload(&payload)?),
            OpCode::Data(Data::Continue) => {
                let partial = self.partial.as_mut().expect("checked");
                if partial.text && !partial.compressed {
                    partial
                        .utf8
                        .feed(&payload, header.is_final)
                        .map_err(|_| ReadError::Utf8)?;
                }
                partial.data.extend_from_slice(&payload);
                partial.charges.extend(charge);
                if !header.is_final {
                    return Ok(None);
                }
                let p = self.partial.take().expect("checked");
                let message = self.message(p.text, p.compressed, p.data.freeze())?;
                Read::Message(
                    message,
                    Held {
                        _charges: p.charges,
                    },
                )
            }
            OpCode::Data(data) => {
                let text = data == Data::Text;
                if !header.is_final {
                    let mut utf8 = Utf8Fragments::default();
                    if text && !header.rsv1 {
                        utf8.feed(&payload, false).map_err(|_| ReadError::Utf8)?;
                    }
                    self.partial = Some(Partial {
                        text,
                        compressed: header.rsv1,
                        data: BytesMut::from(payload),
                        utf8,
                        charges: charge.into_iter().collect(),
                    });
                    return Ok(None);
                }
                let message = self.message(text, header.rsv1, payload)?;
                let held = Held {
                    _charges: charge.into_iter().collect(),
                };
                Read::Message(message, held)
            }
        };
        Ok(Some(read))
    }

    /// A whole message's payload, inflated if it was sent compressed.
    fn message(&mut self, text: bool, compressed: bool, data: Bytes) -> Result<Message, ReadError> {
        let data = if compressed {
            let inflater = self.inflater.as_mut().expect("checked");
            inflater
                .inflate(&data, self.max_message)
                .map_err(|e| match e {
                    InflateError::TooLarge(_) => ReadError::TooLarge(e.to_string()),
                    InflateError::Corrupt(_) => ReadError::Protocol(e.to_string()),
                })?
        } else {
            data
        };
        if text {
            let text = tungstenite::Utf8Bytes::try_from(data).map_err(|_| ReadError::Utf8)?;
            Ok(Message::Text(text))
        } else {
            Ok(Message::Binary(data))
        }
    }
}

/// A Close frame's code and reason (RFC 6455 §5.5.1, §7.4).
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, ReadError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ReadError::Protocol("a Close frame of one byte".into())),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() || code < 1000 {
                return Err(ReadError::Protocol(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ReadError::Utf8)?;
            Ok(Some((code, reason.to_string())))
        }
    }
}

/// XOR `data` with the 4-byte `mask`, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut out = vec![first];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn parse_all(bytes: &[u8]) -> Vec<Result<Read, String>> {
        let mut reader = Reader::new(bytes.to_vec(), 1 << 20, 1 << 20);
        let mut out = Vec::new();
        loop {
            match reader.parse() {
                Ok(Some(read)) => out.push(Ok(read)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn unmask_matches_the_bytewise_xor() {
        for len in 0..20 {
            let mut data: Vec<u8> = (0..len as u8).collect();
            unmask(&mut data, [9, 8, 7, 6]);
            let expect: Vec<u8> = (0..len as u8)
                .map(|b| b ^ [9, 8, 7, 6][b as usize % 4])
                .collect();
            assert_eq!(data, expect);
        }
    }

    #[test]
    fn fragments_are_joined_and_control_frames_pass_between() {
        let mut bytes = masked(0x01, b"Hel");
        bytes.extend(masked(0x89, b"ping"));
        bytes.extend(masked(0x80, "lo κ".as_bytes()));
        let reads = parse_all(&bytes);
        assert!(matches!(&reads[0], Ok(Read::Ping(p)) if &p[..] == b"ping"));
        assert!(
            matches!(&reads[1], Ok(Read::Message(Message::Text(t), _)) if t.as_str() == "Hello κ")
        );
        assert_eq!(reads.len(), 2);
    }

    #[test]
    fn protocol_errors_are_named() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        assert!(
            parse_all(&unmasked)[0]
                .as_ref()
                .unwrap_err()
                .contains("masked")
        );
        let rsv1 = masked(0xC1, b"x");
        assert!(
            parse_all(&rsv1)[0]
                .as_ref()
                .unwrap_err()
                .contains("reserved")
        );
        let bad_close = masked(0x88, &[0x03, 0xED]);
        assert!(
            parse_all(&bad_close)[0]
                .as_ref()
                .unwrap_err()
                .contains("close code 1005")
        );
        let bad_text = masked(0x81, b"\xff");
        assert!(
            parse_all(&bad_text)[0]
                .as_ref()
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn a_partial_frame_waits_for_its_rest() {
        let bytes = masked(0x82, &[7u8; 300]);
        let mut reader = Reader::new(bytes[..100].to_vec(), 1 << 20, 1 << 20);
        assert!(reader.parse().unwrap().is_none());
        assert_eq!(
            reader.large_frame_ahead(),
            None,
            "a 300-byte frame is read in a chunk"
        );
        reader.buf.extend_from_slice(&bytes[100..]);
        assert!(
            matches!(reader.parse().unwrap(), Some(Read::Message(Message::Binary(b), _)) if b.len() == 300)
        );
    }
}
