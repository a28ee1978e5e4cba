//! The PROXY header reader: any bytes are a header, "more", or an error;
//! a header is never longer than what was seen, and a prefix the reader
//! called incomplete (and consumed) never ends after the header does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshost_proto::proxy::{self, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(header)) = proxy::parse(data) else {
        return;
    };
    assert!(header.len <= data.len() && header.len <= MAX_HEADER);
    let step = (data.len() / 64).max(1);
    for cut in (0..data.len()).step_by(step) {
        if let Ok(None) = proxy::parse(&data[..cut]) {
            assert!(
                cut <= header.len,
                "{cut} bytes were incomplete; the header is {}",
                header.len
            );
        }
    }
});
