//! Server-to-client WebSocket frames, encoded once as bytes.
//!
//! Server frames are never masked (RFC 6455 §5.1), so one encoding of a
//! message serves every connection it goes to: a hub broadcast or a topic
//! publish frames its message once and queues the same `Bytes` (a reference
//! count, not a copy) to every recipient, whose writer hands it to the
//! socket as it is.

use bytes::{BufMut, Bytes, BytesMut};

/// Data opcodes (RFC 6455 §5.2) a server sends outside tungstenite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Ping = 0x9,
    Pong = 0xA,
}

/// One frame: FIN bit, opcode, unmasked length and `payload`.
pub fn encode(kind: Kind, fin: bool, payload: &[u8]) -> Bytes {
    encode_with(if fin { 0x80 } else { 0 } | kind as u8, payload)
}

/// A frame's header alone, for a payload written after it as it is (a large
/// push goes out without being copied into its frame).
pub fn header(kind: Kind, fin: bool, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(len));
    put_header(&mut out, if fin { 0x80 } else { 0 } | kind as u8, len);
    out.freeze()
}

/// A whole message's frame with a compressed payload (RSV1 set, RFC 7692).
pub fn encode_compressed(kind: Kind, payload: &[u8]) -> Bytes {
    encode_with(0x80 | 0x40 | kind as u8, payload)
}

/// A Close frame with `code` and `reason`.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode_with(0x80 | 0x8, &payload)
}

/// A Close frame without a code (the reply to one without a code).
pub fn encode_empty_close() -> Bytes {
    encode_with(0x80 | 0x8, &[])
}

fn encode_with(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = BytesMut::with_capacity(header_len(len) + len);
    put_header(&mut out, first, len);
    out.put_slice(payload);
    out.freeze()
}

fn put_header(out: &mut BytesMut, first: u8, len: usize) {
    out.put_u8(first);
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

fn header_len(payload: usize) -> usize {
    match payload {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::FrameHeader;

    /// tungstenite's parser (a client's) reads ours back.
    fn parse(bytes: &[u8]) -> (FrameHeader, usize) {
        let mut cursor = std::io::Cursor::new(bytes);
        let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!(cursor.position() as usize + len as usize, bytes.len());
        (header, len as usize)
    }

    #[test]
    fn every_length_encoding_parses_back() {
        for len in [0, 1, 125, 126, 0xFFFF, 0x10000] {
            let payload = vec![b'x'; len];
            let bytes = encode(Kind::Binary, true, &payload);
            let (header, parsed) = parse(&bytes);
            assert_eq!(parsed, len);
            assert!(header.is_final);
            assert!(header.mask.is_none());
            assert!(bytes.ends_with(&payload));
        }
    }

    #[test]
    fn fragments_clear_fin() {
        let (header, _) = parse(&encode(Kind::Text, false, b"he"));
        assert!(!header.is_final);
        let (header, _) = parse(&encode(Kind::Continuation, true, b"llo"));
        assert!(header.is_final);
    }
}
