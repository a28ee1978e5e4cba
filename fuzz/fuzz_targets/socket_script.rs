//! A whole socket's protocol path driven by a script: a client's frames
//! (well-formed or not, masked or not, compressed or not, lying about their
//! length or not), delivered in any chunking, through the reader (checks,
//! fragments, inflation), and every message echoed back through the
//! outbox's framing (framed once, compressed for a deflate socket) and read
//! back as a client would. Never a panic; every echo is one well-formed
//! server frame that reads back to the message.
#![no_main]

use arbitrary::Arbitrary;
use flate2::{Compress, Compression, FlushCompress};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use tungstenite::Message;
use tungstenite::protocol::frame::FrameHeader;
use wshost_proto::decode::{Decoder, Large, Read};
use wshost_proto::deflate::{Agreed, Inflater, compress_frame};
use wshost_proto::frame::{self, Kind};

#[derive(Arbitrary, Debug)]
struct Script {
    /// Limits: 0 tiny, 1 small, 2 large.
    limits: u8,
    /// permessage-deflate agreed, with this client window (None: no context takeover).
    deflate: Option<Option<u8>>,
    /// Server window bits for what the host sends (9..=15).
    server_bits: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A frame as a client builds it.
    Frame {
        opcode: u8,
        fin: bool,
        compress: bool,
        rsv: u8,
        mask: Option<[u8; 4]>,
        payload: Vec<u8>,
        /// Claim another length than the payload's.
        lie: Option<u32>,
    },
    /// Bytes as they are.
    Raw(Vec<u8>),
    /// Deliver up to this many pending bytes now.
    Deliver(u16),
}

fuzz_target!(|script: Script| {
    let (max_frame, max_message) = match script.limits % 3 {
        0 => (125, 200),
        1 => (4 << 10, 8 << 10),
        _ => (1 << 20, 1 << 20),
    };
    let mut decoder = Decoder::new(&[], max_frame, max_message);
    let agreed = script.deflate.map(|client_bits| Agreed {
        server_bits: 9 + script.server_bits % 7,
        client_bits: client_bits.map(|b| 9 + b % 7),
    });
    if let Some(agreed) = &agreed {
        decoder.inflate_with(Inflater::new(agreed));
    }
    let mut client = Client::default();
    let mut pending = Vec::new();
    let mut large: Option<Large> = None;
    for op in script.ops {
        let deliver = match op {
            Op::Frame {
                opcode,
                fin,
                compress,
                rsv,
                mask,
                payload,
                lie,
            } => {
                let rsv1 = compress && agreed.is_some();
                let payload = if rsv1 {
                    client.deflate(&payload)
                } else {
                    payload
                };
                let first = u8::from(fin) << 7 | u8::from(rsv1) << 6 | (rsv & 0x30) | opcode & 0x0f;
                pending.extend(encode(first, mask, &payload, lie));
                None
            }
            Op::Raw(bytes) => {
                pending.extend(bytes);
                None
            }
            Op::Deliver(n) => Some(n as usize),
        };
        let n = deliver.unwrap_or(0).min(pending.len());
        let driven = wshost_fuzz::drive(
            &mut decoder,
            &mut large,
            &pending[..n],
            (n.max(1), 64),
            |read| echo(read, agreed.as_ref(), max_message),
        );
        if driven.is_err() {
            return;
        }
        pending.drain(..n);
    }
});

/// A client frame's bytes: header (claiming `lie` if given), masked payload.
fn encode(first: u8, mask: Option<[u8; 4]>, payload: &[u8], lie: Option<u32>) -> Vec<u8> {
    let len = lie.map_or(payload.len() as u64, u64::from);
    let masked = u8::from(mask.is_some()) << 7;
    let mut out = vec![first];
    match len {
        0..=125 => out.push(masked | len as u8),
        126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(masked | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client's compressor, context kept across messages (as browsers do).
struct Client(Compress);

impl Default for Client {
    fn default() -> Self {
        Client(Compress::new(Compression::fast(), false))
    }
}

impl Client {
    fn deflate(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 64);
        loop {
            let before = self.0.total_in() as usize;
            self.0
                .compress_vec(payload, &mut out, FlushCompress::Sync)
                .unwrap();
            if self.0.total_in() as usize - before >= payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        if out.ends_with(&[0, 0, 0xff, 0xff]) {
            out.truncate(out.len() - 4);
        }
        out
    }
}

/// Echo a message through the outbox's framing and read it back as the
/// client would.
fn echo(read: Read, agreed: Option<&Agreed>, max_message: usize) {
    let Read::Message(msg) = read else {
        return;
    };
    assert!(msg.len() <= max_message);
    let (kind, payload) = match &msg {
        Message::Text(text) => (Kind::Text, text.as_bytes()),
        Message::Binary(data) => (Kind::Binary, &data[..]),
        _ => unreachable!("the decoder hands up data messages only"),
    };
    let mut sent = frame::encode(kind, true, payload);
    if let Some(agreed) = agreed {
        sent = compress_frame(&sent, agreed.server_bits);
    }
    let mut cursor = Cursor::new(&sent[..]);
    let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
    let body = &sent[cursor.position() as usize..];
    assert_eq!(body.len() as u64, len, "one whole frame");
    assert!(header.is_final && header.mask.is_none());
    if header.rsv1 {
        let mut inflater = Inflater::new(&Agreed {
            server_bits: 15,
            client_bits: None,
        });
        assert_eq!(&inflater.inflate(body, payload.len()).unwrap()[..], payload);
    } else {
        assert_eq!(body, payload);
    }
}
