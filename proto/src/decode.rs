//! What the peer sends, parsed (RFC 6455 §5): frames unmasked and checked,
//! fragments joined into whole messages, compressed messages inflated
//! ([`crate::deflate`]), control frames handed up as they come. Sans I/O:
//! the caller reads the socket into [`Decoder::buffer`] and asks for what
//! is whole.
//!
//! Every limit is checked from a frame's header, before its payload is
//! awaited: a frame over `max_frame`, a message (its fragments so far and
//! this one) over `max_message`, and what a compressed message inflates to
//! (counted as it is produced). A frame too large to wait for in the
//! caller's read chunk can be taken out ([`Decoder::start_large`]) and
//! read straight into a buffer of its own size, which becomes its message
//! without a copy. Nothing is kept after a message.

use crate::deflate::{InflateError, Inflater};
use crate::utf8::Utf8Fragments;
use bytes::{Buf, Bytes, BytesMut};
use std::io::Cursor;
use tungstenite::Message;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// One thing the peer sent.
#[derive(Debug)]
pub enum Read {
    /// A whole message.
    Message(Message),
    Ping(Bytes),
    Pong,
    /// A Close frame: its code and reason, if it carried them.
    Close(Option<(u16, String)>),
}

/// Why the peer's bytes cannot be read on; each says its close code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The peer broke the protocol (close with 1002).
    #[error("{0}")]
    Protocol(String),
    /// Text that is not UTF-8 (close with 1007).
    #[error("text is not valid UTF-8")]
    Utf8,
    /// A frame or message over the limit (close with 1009).
    #[error("{0}")]
    TooLarge(String),
}

impl DecodeError {
    /// The close code the peer is sent (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            DecodeError::Protocol(_) => 1002,
            DecodeError::Utf8 => 1007,
            DecodeError::TooLarge(_) => 1009,
        }
    }
}

/// A fragmented message being received.
struct Partial {
    text: bool,
    compressed: bool,
    data: BytesMut,
    utf8: Utf8Fragments,
}

/// A large frame taken out of the buffer, to be read straight into a
/// buffer of its own size ([`Large::payload`]) and then handed back with
/// [`Decoder::finish_large`].
#[derive(Debug)]
pub struct Large {
    header: FrameHeader,
    /// Its payload so far (masked, as read); capacity for all of it.
    pub payload: Vec<u8>,
    len: usize,
}

impl Large {
    /// All its payload has been read.
    pub fn is_complete(&self) -> bool {
        self.payload.len() == self.len
    }

    /// Payload bytes still to read.
    pub fn missing(&self) -> usize {
        self.len - self.payload.len()
    }
}

/// One connection's reading state.
pub struct Decoder {
    buf: BytesMut,
    /// Boxed: only a fragmented message has one, and every socket holds
    /// a decoder.
    partial: Option<Box<Partial>>,
    max_frame: usize,
    max_message: usize,
    /// Set when permessage-deflate was negotiated. Boxed: one word, where
    /// the inflater's four sat in every socket's decoder, deflate or not.
    inflater: Option<Box<Inflater>>,
}

impl Decoder {
    /// A decoder whose buffer starts with `early` (bytes the client sent
    /// right after its request head).
    pub fn new(early: &[u8], max_frame: usize, max_message: usize) -> Self {
        Decoder {
            buf: BytesMut::from(early),
            partial: None,
            max_frame,
            max_message,
            inflater: None,
        }
    }

    /// Inflate messages sent compressed (RSV1), as negotiated.
    pub fn inflate_with(&mut self, inflater: Inflater) {
        self.inflater = Some(Box::new(inflater));
    }

    /// Where the caller appends what it reads from the socket.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Let go of the read buffer's memory if it holds nothing: an idle
    /// connection keeps no buffer.
    pub fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Payload bytes of the fragmented message under way.
    pub fn assembling(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// The payload size of a frame whose (checked) header is buffered and
    /// whose payload is over `threshold` and not all buffered yet: to be
    /// taken out with [`Decoder::start_large`]. Call after [`Decoder::parse`]
    /// returned `None` (it checks the header first).
    pub fn large_frame_ahead(&self, threshold: usize) -> Option<usize> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (_, len) = FrameHeader::parse(&mut cursor).ok()??;
        let head = cursor.position() as usize;
        let len = usize::try_from(len).ok()?;
        (len > threshold && len <= self.max_frame && self.buf.len() - head < len).then_some(len)
    }

    /// Take the large frame ahead ([`Decoder::large_frame_ahead`]) out of
    /// the buffer, with what of its payload was buffered.
    pub fn start_large(&mut self) -> Option<Large> {
        let mut cursor = Cursor::new(&self.buf[..]);
        let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
        let len = usize::try_from(len).ok()?;
        self.buf.advance(cursor.position() as usize);
        let mut payload = Vec::with_capacity(len);
        let buffered = self.buf.len().min(len);
        payload.extend_from_slice(&self.buf[..buffered]);
        self.buf.advance(buffered);
        self.release_idle_buffer();
        Some(Large {
            header,
            payload,
            len,
        })
    }

    /// What a large frame, read whole, comes to; `None` for a fragment that
    /// does not end its message.
    pub fn finish_large(&mut self, large: Large) -> Result<Option<Read>, DecodeError> {
        debug_assert!(large.is_complete());
        let Large {
            header,
            mut payload,
            ..
        } = large;
        if let Some(mask) = header.mask {
            unmask(&mut payload, mask);
        }
        self.frame(&header, Bytes::from(payload))
    }

    /// The next thing whole in the buffer, if any.
    pub fn parse(&mut self) -> Result<Option<Read>, DecodeError> {
        loop {
            let mut cursor = Cursor::new(&self.buf[..]);
            let Some((header, len)) = FrameHeader::parse(&mut cursor)
                .map_err(|e| DecodeError::Protocol(e.to_string()))?
            else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            self.check(&header, len)?;
            let len = len as usize; // checked: at most max_frame
            if self.buf.len() - head < len {
                return Ok(None);
            }
            self.buf.advance(head);
            let mut payload = self.buf.split_to(len);
            if let Some(mask) = header.mask {
                unmask(&mut payload, mask);
            }
            if let Some(read) = self.frame(&header, payload.freeze())? {
                return Ok(Some(read));
            }
        }
    }

    /// Check a frame's header before its payload is awaited.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), DecodeError> {
        let protocol = |why: &str| Err(DecodeError::Protocol(why.into()));
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
            return Err(DecodeError::TooLarge(format!(
                "a frame of {len} bytes; at most {}",
                self.max_frame
            )));
        }
        let so_far = self.assembling();
        if so_far as u64 + len > self.max_message as u64 {
            return Err(DecodeError::TooLarge(format!(
                "a message of over {} bytes",
                self.max_message
            )));
        }
        Ok(())
    }

    /// What a whole, checked, unmasked frame comes to; `None` for a
    /// fragment that does not end its message.
    fn frame(&mut self, header: &FrameHeader, payload: Bytes) -> Result<Option<Read>, DecodeError> {
        let read = match header.opcode {
            OpCode::Control(Control::Ping) => Read::Ping(payload),
            OpCode::Control(Control::Pong) => Read::Pong,
            OpCode::Control(_) => Read::Close(close_payload(&payload)?),
            OpCode::Data(Data::Continue) => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(DecodeError::Protocol(
                        "continuation without a fragmented message".into(),
                    ));
                };
                if partial.text && !partial.compressed {
                    partial
                        .utf8
                        .feed(&payload, header.is_final)
                        .map_err(|_| DecodeError::Utf8)?;
                }
                partial.data.extend_from_slice(&payload);
                if !header.is_final {
                    return Ok(None);
                }
                let Some(p) = self.partial.take() else {
                    unreachable!("taken as_mut above");
                };
                Read::Message(self.message(p.text, p.compressed, p.data.freeze())?)
            }
            OpCode::Data(data) => {
                let text = data == Data::Text;
                if !header.is_final {
                    let mut utf8 = Utf8Fragments::default();
                    if text && !header.rsv1 {
                        utf8.feed(&payload, false).map_err(|_| DecodeError::Utf8)?;
                    }
                    self.partial = Some(Box::new(Partial {
                        text,
                        compressed: header.rsv1,
                        data: BytesMut::from(payload),
                        utf8,
                    }));
                    return Ok(None);
                }
                Read::Message(self.message(text, header.rsv1, payload)?)
            }
        };
        Ok(Some(read))
    }

    /// A whole message's payload, inflated if it was sent compressed.
    fn message(
        &mut self,
        text: bool,
        compressed: bool,
        data: Bytes,
    ) -> Result<Message, DecodeError> {
        let data = if compressed {
            let Some(inflater) = self.inflater.as_mut() else {
                return Err(DecodeError::Protocol("reserved bits are set".into()));
            };
            inflater
                .inflate(&data, self.max_message)
                .map_err(|e| match e {
                    InflateError::TooLarge(_) => DecodeError::TooLarge(e.to_string()),
                    InflateError::Corrupt(_) => DecodeError::Protocol(e.to_string()),
                })?
        } else {
            data
        };
        if text {
            let text = tungstenite::Utf8Bytes::try_from(data).map_err(|_| DecodeError::Utf8)?;
            Ok(Message::Text(text))
        } else {
            Ok(Message::Binary(data))
        }
    }
}

/// A Close frame's code and reason (RFC 6455 §5.5.1, §7.4).
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, DecodeError> {
    match payload {
        [] => Ok(None),
        [_] => Err(DecodeError::Protocol("a Close frame of one byte".into())),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !CloseCode::from(code).is_allowed() || code < 1000 {
                return Err(DecodeError::Protocol(format!("invalid close code {code}")));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| DecodeError::Utf8)?;
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
        let mut reader = Decoder::new(bytes, 1 << 20, 1 << 20);
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
            matches!(&reads[1], Ok(Read::Message(Message::Text(t))) if t.as_str() == "Hello κ")
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
        let mut reader = Decoder::new(&bytes[..100], 1 << 20, 1 << 20);
        assert!(reader.parse().unwrap().is_none());
        assert_eq!(
            reader.large_frame_ahead(8192),
            None,
            "a 300-byte frame is read in a chunk"
        );
        assert_eq!(reader.large_frame_ahead(200), Some(300));
        reader.buf.extend_from_slice(&bytes[100..]);
        assert!(
            matches!(reader.parse().unwrap(), Some(Read::Message(Message::Binary(b))) if b.len() == 300)
        );
    }
}
