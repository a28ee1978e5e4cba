//! permessage-deflate (RFC 7692): the negotiation, inflating what the peer
//! sends compressed, and compressing what the host sends.
//!
//! Memory is what decides the design: a zlib stream state is ~7 KiB to
//! inflate and ~270 KiB to deflate, far more than an idle socket's whole
//! budget. So no socket owns one. The host always answers with
//! `server_no_context_takeover`, so each message it sends is compressed on
//! its own by a compressor shared by the thread (as uWS's shared
//! compressor); and the peer's messages are inflated by a shared inflater
//! primed with the socket's own history: the last bytes it sent, at most
//! the window the host asked the client to keep (`client_max_window_bits`,
//! 1 KiB when the client lets us choose), none with
//! `client_no_context_takeover` (asked of a client that does not let us
//! choose its window, which would cost 32 KiB a socket). A topic message sent to many deflate
//! sockets is compressed once per thread, not once per socket.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;

/// The window the host asks a client that lets it choose to compress with:
/// 2^10 = 1 KiB of history kept per socket.
const CLIENT_WINDOW_BITS: u8 = 10;
/// Messages shorter than this are sent as they are (Node ws's default
/// threshold): resetting the compressor alone (zeroing its 64 KiB hash
/// table) costs more than a short message saves. Measured with 256 B JSON
/// echoed at 64 connections: 0.64x the rate without deflate when compressed.
const MIN_COMPRESSED: usize = 1024;
/// The largest frame whose compressed form a thread keeps for the next
/// socket it goes to (a topic message to many sockets is compressed once a
/// thread): larger ones are compressed again for each.
const CACHED_AT_MOST: usize = 256 << 10;
/// The empty stored block that ends every compressed message (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What was agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// Window bits the host compresses with (the client's
    /// `server_max_window_bits`, else 15).
    pub server_bits: u8,
    /// The client's window: the history kept to inflate its messages;
    /// `None` with `client_no_context_takeover`.
    pub client_bits: Option<u8>,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response(&self, offered_client_bits: bool) -> String {
        let mut out = "permessage-deflate; server_no_context_takeover".to_string();
        if self.server_bits < 15 {
            out.push_str(&format!("; server_max_window_bits={}", self.server_bits));
        }
        match self.client_bits {
            None => out.push_str("; client_no_context_takeover"),
            Some(bits) if offered_client_bits => {
                out.push_str(&format!("; client_max_window_bits={bits}"));
            }
            Some(_) => {}
        }
        out
    }
}

/// Pick the first permessage-deflate offer of `header` values that the host
/// can honour (§7.1); `None` declines them all. Returns what was agreed and
/// whether the client offered `client_max_window_bits` (it may then be
/// answered).
pub fn negotiate<'a>(offers: impl Iterator<Item = &'a str>) -> Option<(Agreed, bool)> {
    offers
        .flat_map(|value| value.split(','))
        .find_map(|offer| accept(offer.trim()))
}

fn accept(offer: &str) -> Option<(Agreed, bool)> {
    let mut parts = offer.split(';').map(str::trim);
    if parts.next()? != "permessage-deflate" {
        return None;
    }
    let mut seen = Vec::new();
    let mut agreed = Agreed {
        server_bits: 15,
        client_bits: Some(15),
    };
    let mut offered_client_bits = false;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None; // a parameter given twice: decline (§7.1)
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => agreed.client_bits = None,
            // zlib cannot compress raw deflate with an 8-bit window.
            ("server_max_window_bits", Some(v)) => {
                agreed.server_bits = bits(v).filter(|&b| b >= 9)?
            }
            ("client_max_window_bits", None) => offered_client_bits = true,
            ("client_max_window_bits", Some(v)) => {
                bits(v)?;
                offered_client_bits = true;
            }
            _ => return None,
        }
    }
    match &mut agreed.client_bits {
        Some(client) if offered_client_bits => {
            let limit = seen_value(offer, "client_max_window_bits").unwrap_or(15);
            *client = CLIENT_WINDOW_BITS.min(limit).max(9);
        }
        // A client that does not let us choose its window would compress
        // with 32 KiB of history, all of which the host would keep per
        // socket: answer `client_no_context_takeover` instead, which a
        // server may send unasked (§7.1.1.1), and keep none.
        Some(_) => agreed.client_bits = None,
        None => {}
    }
    Some((agreed, offered_client_bits))
}

fn bits(value: &str) -> Option<u8> {
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

fn seen_value(offer: &str, name: &str) -> Option<u8> {
    offer
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .and_then(|(_, v)| bits(v.trim().trim_matches('"')))
}

thread_local! {
    /// One inflater per thread, primed per message with a socket's history.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new_with_window_bits(false, 15));
    /// One compressor per thread and window size (index: window bits).
    static DEFLATE: RefCell<[Option<Compress>; 16]> = const { RefCell::new([const { None }; 16]) };
    /// The last frame compressed on this thread, with the frame it came
    /// from: a topic message queued to many sockets is compressed once.
    static LAST: RefCell<Option<(Bytes, u8, Bytes)>> = const { RefCell::new(None) };
}

/// Why a compressed message could not be inflated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past the message size limit (close with 1009).
    #[error("a message inflating to over {0} bytes")]
    TooLarge(usize),
    /// It is not a valid deflate stream (close with 1002).
    #[error("inflating: {0}")]
    Corrupt(String),
}

/// One socket's side of inflating: the history its next message may refer to.
#[derive(Debug)]
pub struct Inflater {
    /// The last bytes inflated, at most `window`; empty without context takeover.
    history: Vec<u8>,
    window: usize,
}

impl Inflater {
    pub fn new(agreed: &Agreed) -> Self {
        Inflater {
            history: Vec::new(),
            window: agreed.client_bits.map_or(0, |bits| 1 << bits),
        }
    }

    /// Inflate one whole message; `TooLarge` past `max` bytes.
    pub fn inflate(&mut self, data: &[u8], max: usize) -> Result<Bytes, InflateError> {
        let out = INFLATE.with_borrow_mut(|inflater| {
            inflater.reset(false);
            if !self.history.is_empty() {
                inflater
                    .set_dictionary(&self.history)
                    .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            }
            // Room for a typical ratio up front, never more than `max`:
            // what a message inflates to is counted, not trusted.
            let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(max));
            for input in [data, &TAIL[..]] {
                inflate_all(inflater, input, &mut out, max)?;
            }
            Ok::<_, InflateError>(out)
        })?;
        self.remember(&out);
        Ok(Bytes::from(out))
    }

    /// Keep the last `window` bytes of what was inflated.
    fn remember(&mut self, out: &[u8]) {
        if self.window == 0 {
            return;
        }
        if out.len() >= self.window {
            self.history.clear();
            self.history
                .extend_from_slice(&out[out.len() - self.window..]);
        } else {
            let keep = self.window - out.len();
            let drop = self.history.len().saturating_sub(keep);
            self.history.drain(..drop);
            self.history.extend_from_slice(out);
        }
        self.history.shrink_to_fit();
    }
}

/// Bytes inflated at once, into a fixed chunk on the stack before they are
/// counted against the limit and appended: `out` grows only by what was
/// really produced, never by arithmetic on a guess.
const INFLATE_CHUNK: usize = 8 << 10;

/// Inflate all of `input` onto `out`; `TooLarge` as soon as `out` would
/// pass `max` bytes.
fn inflate_all(
    inflater: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), InflateError> {
    let mut chunk = [0u8; INFLATE_CHUNK];
    loop {
        let before = (inflater.total_in(), inflater.total_out());
        let status = inflater
            .decompress(input, &mut chunk, FlushDecompress::Sync)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        let used = (inflater.total_in() - before.0) as usize;
        let made = (inflater.total_out() - before.1) as usize;
        input = &input[used..];
        if made > max - out.len() {
            return Err(InflateError::TooLarge(max));
        }
        out.extend_from_slice(&chunk[..made]);
        match status {
            Status::StreamEnd => return Ok(()),
            // All input taken and the output flushed: the chunk had room left.
            _ if input.is_empty() && made < chunk.len() => return Ok(()),
            _ if used == 0 && made == 0 => {
                return Err(InflateError::Corrupt("no progress".into()));
            }
            _ => {}
        }
    }
}

/// One server frame as a deflate socket sends it: a whole text or binary
/// frame worth compressing is compressed (RSV1 set); anything else (a
/// fragment, a control frame, a short message) goes as it is.
pub fn compress_frame(frame: &Bytes, bits: u8) -> Bytes {
    let (first, payload) = match split_frame(frame) {
        Some(parts) => parts,
        None => return frame.clone(),
    };
    let whole_data = first & 0x80 != 0 && matches!(first & 0x0f, 0x1 | 0x2);
    if !whole_data || payload.len() < MIN_COMPRESSED {
        return frame.clone();
    }
    let cached = LAST.with_borrow(|last| match last {
        Some((from, b, to))
            if *b == bits && from.as_ptr() == frame.as_ptr() && from.len() == frame.len() =>
        {
            Some(to.clone())
        }
        _ => None,
    });
    if let Some(compressed) = cached {
        return compressed;
    }
    let compressed = DEFLATE.with_borrow_mut(|pool| {
        let compressor = pool[bits as usize].get_or_insert_with(|| {
            Compress::new_with_window_bits(Compression::fast(), false, bits)
        });
        compressor.reset();
        deflate_all(compressor, payload)
    });
    let kind = if first & 0x0f == 0x1 {
        crate::frame::Kind::Text
    } else {
        crate::frame::Kind::Binary
    };
    let out = crate::frame::encode_compressed(kind, &compressed);
    // Kept for the next socket only when small: every worker thread keeps
    // its last one, and one of 16 MiB each would stay for good.
    if frame.len() <= CACHED_AT_MOST {
        LAST.with_borrow_mut(|last| *last = Some((frame.clone(), bits, out.clone())));
    }
    out
}

/// Deflate `payload` with a sync flush, less the 4-byte tail (§7.2.1).
fn deflate_all(compressor: &mut Compress, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() / 2 + 64);
    let mut input = payload;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len().max(64));
        }
        let before = compressor.total_in();
        compressor
            .compress_vec(input, &mut out, FlushCompress::Sync)
            .expect("deflate of a fresh stream cannot fail");
        input = &input[(compressor.total_in() - before) as usize..];
        // Done when all input is taken and the flush fit in the room left.
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// A server frame's first byte and payload; `None` if it is not one whole
/// unmasked frame (never, for frames [`crate::frame`] made).
fn split_frame(frame: &[u8]) -> Option<(u8, &[u8])> {
    let (&first, &second) = (frame.first()?, frame.get(1)?);
    let (start, len) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (second & 0x80 == 0 && frame.len() == start + len).then(|| (first, &frame[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(offer: &str) -> Option<String> {
        negotiate([offer].into_iter()).map(|(a, offered)| a.response(offered))
    }

    #[test]
    fn negotiation_honours_or_declines_each_parameter() {
        // Chromium's, Node ws's and Python websockets' default offer.
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")
        );
        // Without client_max_window_bits: no context takeover asked, no
        // 32 KiB of history kept.
        assert_eq!(
            agreed("permessage-deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
        assert_eq!(
            agreed("permessage-deflate; client_no_context_takeover; server_max_window_bits=12")
                .as_deref(),
            Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_no_context_takeover"
            )
        );
        assert_eq!(
            agreed("permessage-deflate; client_max_window_bits=9").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=9")
        );
        // Declined: unknown or repeated parameters, bad values, 8-bit server window.
        assert_eq!(agreed("permessage-deflate; foo"), None);
        assert_eq!(
            agreed("permessage-deflate; server_no_context_takeover; server_no_context_takeover"),
            None
        );
        assert_eq!(
            agreed("permessage-deflate; server_max_window_bits=16"),
            None
        );
        assert_eq!(agreed("permessage-deflate; server_max_window_bits"), None);
        assert_eq!(agreed("permessage-deflate; server_max_window_bits=8"), None);
        assert_eq!(agreed("x-webkit-deflate-frame"), None);
        // The first acceptable offer wins.
        assert_eq!(
            agreed("permessage-deflate; server_max_window_bits=8, permessage-deflate").as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
        );
    }

    #[test]
    fn what_is_compressed_inflates_back_with_or_without_history() {
        let text = "the same words again and again, the same words ".repeat(40);
        let frame = crate::frame::encode(crate::frame::Kind::Text, true, text.as_bytes());
        let compressed = compress_frame(&frame, 15);
        assert_eq!(compressed[0], 0xC1, "FIN, RSV1, text");
        assert!(compressed.len() < frame.len() / 4);
        let (_, payload) = split_frame(&compressed).unwrap();
        let agreed = Agreed {
            server_bits: 15,
            client_bits: Some(10),
        };
        let mut inflater = Inflater::new(&agreed);
        for _ in 0..3 {
            let out = inflater.inflate(payload, 1 << 20).unwrap();
            assert_eq!(&out[..], text.as_bytes());
            assert_eq!(inflater.history.len(), 1024);
        }
        // Past the limit: refused, not inflated without bound.
        assert_eq!(
            inflater.inflate(payload, 100),
            Err(InflateError::TooLarge(100))
        );
    }

    /// A raw deflate stream of `len` zeros, sync-flushed, less its tail: a
    /// client's compressed message.
    fn zeros(len: usize) -> Vec<u8> {
        let mut compressor = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(len / 500 + 1024);
        compressor
            .compress_vec(&vec![0u8; len], &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - TAIL.len());
        out
    }

    #[test]
    fn a_bomb_is_refused_at_every_limit_without_a_panic() {
        // The review's C1: ~22 KB inflating to 22 MB panicked the socket's
        // task (`clamp` with min > max) once within 4 KiB of the limit.
        let bomb = zeros(22 << 20);
        assert!(bomb.len() < 32 << 10, "{} bytes", bomb.len());
        let agreed = Agreed {
            server_bits: 15,
            client_bits: None,
        };
        let mut inflater = Inflater::new(&agreed);
        for max in [0, 1, 63, 64, 4095, 4097, 8191, 8193, 1 << 20, 16 << 20] {
            assert_eq!(
                inflater.inflate(&bomb, max),
                Err(InflateError::TooLarge(max)),
                "max {max}"
            );
        }
        // Exactly at the limit is allowed; one byte over is not.
        let small = zeros(10_000);
        assert_eq!(inflater.inflate(&small, 10_000).unwrap().len(), 10_000);
        assert_eq!(
            inflater.inflate(&small, 9_999),
            Err(InflateError::TooLarge(9_999))
        );
        assert_eq!(
            inflater.inflate(&small, 1 << 20).unwrap(),
            vec![0u8; 10_000]
        );
    }

    #[test]
    fn a_large_compressed_frame_is_not_kept_by_the_thread() {
        let large = crate::frame::encode(crate::frame::Kind::Binary, true, &vec![1u8; 1 << 20]);
        let compressed = compress_frame(&large, 15);
        assert_eq!(compressed[0], 0xC2);
        LAST.with_borrow(|last| {
            assert!(
                last.as_ref()
                    .is_none_or(|(from, ..)| from.len() <= CACHED_AT_MOST)
            )
        });
    }

    #[test]
    fn short_messages_fragments_and_control_frames_go_as_they_are() {
        use crate::frame::{Kind, encode};
        for frame in [
            encode(Kind::Text, true, b"hi"),
            encode(Kind::Text, false, &[b'x'; 200]),
            encode(Kind::Ping, true, b"ping"),
        ] {
            assert_eq!(compress_frame(&frame, 15), frame);
        }
    }
}
