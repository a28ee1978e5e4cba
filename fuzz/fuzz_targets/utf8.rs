//! UTF-8 checked across fragments: however a message is cut, the fragments
//! pass exactly when the whole is valid UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshost_proto::utf8::Utf8Fragments;

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, text)) = data.split_first() else {
        return;
    };
    // Fragment lengths from the first byte's bits: 1..=8 bytes, cycling.
    let mut check = Utf8Fragments::default();
    let mut rest = text;
    let mut valid = true;
    let mut i = 0;
    loop {
        let len = (1 + ((cuts >> (i % 8)) & 7) as usize).min(rest.len());
        let (fragment, after) = rest.split_at(len);
        let fin = after.is_empty();
        if check.feed(fragment, fin).is_err() {
            valid = false;
            break;
        }
        rest = after;
        i += 1;
        if fin {
            break;
        }
    }
    assert_eq!(valid, std::str::from_utf8(text).is_ok());
});
