//! The frame reader with fragment assembly, inflation and every limit: any
//! bytes, delivered in any chunking, through the buffer and the large-frame
//! path as the host drives them. Never a panic; no message over its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshost_proto::decode::{Decoder, Large, Read};
use wshost_proto::deflate::{Agreed, Inflater};

fuzz_target!(|data: &[u8]| {
    let Some((&config, input)) = data.split_first() else {
        return;
    };
    let (max_frame, max_message) = match config & 3 {
        0 => (125, 125),
        1 => (1 << 10, 4 << 10),
        2 => (64 << 10, 16 << 10),
        _ => (16 << 20, 16 << 20),
    };
    let client_bits = match (config >> 2) & 3 {
        0 => None,
        1 => Some(None),
        2 => Some(Some(9)),
        _ => Some(Some(15)),
    };
    // Frames over this are taken out and read on their own (the host's
    // read chunk is 8 KiB; a small one reaches that path with small inputs).
    let threshold = if config & 0x10 != 0 { 16 } else { 8 << 10 };
    let chunk = 1 + (config >> 5) as usize * 9;
    let mut decoder = Decoder::new(&[], max_frame, max_message);
    if let Some(client_bits) = client_bits {
        decoder.inflate_with(Inflater::new(&Agreed {
            server_bits: 15,
            client_bits,
        }));
    }
    let mut large: Option<Large> = None;
    let _ = wshost_fuzz::drive(
        &mut decoder,
        &mut large,
        input,
        (chunk, threshold),
        |read| check(&read, max_message),
    );
    assert!(decoder.assembling() <= max_message);
});

fn check(read: &Read, max_message: usize) {
    match read {
        Read::Message(msg) => assert!(msg.len() <= max_message),
        Read::Ping(data) => assert!(data.len() <= 125),
        Read::Pong => {}
        Read::Close(close) => {
            if let Some((code, reason)) = close {
                assert!(*code >= 1000);
                assert!(reason.len() <= 123);
            }
        }
    }
}
