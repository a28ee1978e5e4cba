//! The inflater, with the message size limit small and large and the
//! socket's history carried from message to message: never a panic, never
//! more than the limit; and what the host compresses inflates back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use tungstenite::protocol::frame::FrameHeader;
use wshost_proto::deflate::{Agreed, InflateError, Inflater, compress_frame};
use wshost_proto::frame::{Kind, encode};

fuzz_target!(|data: &[u8]| {
    let Some((&config, rest)) = data.split_first() else {
        return;
    };
    let max = match config & 3 {
        0 => 0,
        1 => 100,
        2 => 64 << 10,
        _ => 16 << 20,
    };
    let client_bits = match (config >> 2) & 3 {
        0 => None,
        1 => Some(9),
        2 => Some(10),
        _ => Some(15),
    };
    let mut inflater = Inflater::new(&Agreed {
        server_bits: 15,
        client_bits,
    });
    // Two messages in a row: the second may refer to the first's history.
    let cut = rest.len() * ((config >> 4) as usize) / 16;
    for message in [&rest[..cut], &rest[cut..]] {
        match inflater.inflate(message, max) {
            Ok(out) => assert!(out.len() <= max),
            Err(InflateError::TooLarge(limit)) => assert_eq!(limit, max),
            Err(InflateError::Corrupt(_)) => {}
        }
    }

    // What the host sends compressed, a client inflates back.
    let bits = 9 + (config >> 4) % 7;
    let frame = encode(Kind::Binary, true, rest);
    let sent = compress_frame(&frame, bits);
    let mut cursor = Cursor::new(&sent[..]);
    let (header, len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
    let payload = &sent[cursor.position() as usize..];
    assert_eq!(payload.len() as u64, len);
    assert!(header.is_final && header.mask.is_none());
    if header.rsv1 {
        let mut fresh = Inflater::new(&Agreed {
            server_bits: bits,
            client_bits: None,
        });
        let back = fresh.inflate(payload, rest.len()).expect("our own deflate");
        assert_eq!(&back[..], rest);
    } else {
        assert_eq!(payload, rest);
    }
});
