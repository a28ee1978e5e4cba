//! The request head and the handshake's checks: any bytes parse to a head,
//! "more", or an error with a status; a head that passes the checks gets a
//! 101 that parses back as one response with no header of the client's
//! making beyond the subprotocol it offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshost_proto::http::{self, HeadError};

fuzz_target!(|data: &[u8]| {
    let (head, consumed) = match http::parse_head(data) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return,
        Err(e) => {
            assert!(matches!(
                e,
                HeadError::Malformed(_) | HeadError::TooManyHeaders
            ));
            assert!(e.status().is_some());
            return;
        }
    };
    assert!(consumed <= data.len());
    let _ = head.wants_websocket();
    let accept = match http::accept_key(&head) {
        Ok(accept) => accept,
        Err(refusal) => {
            let response = refusal.response();
            assert_complete_response(&response, None);
            return;
        }
    };
    // An accepted handshake has no body: what follows its head is frames.
    assert!(head.header("transfer-encoding").is_none());
    assert!(head.headers_named("content-length").all(|n| n.trim() == "0"));
    let protocol = http::offered_protocols(&head).next().map(str::to_string);
    if let Some(protocol) = &protocol {
        http::check_upgrade(&head, Some(protocol), &[]).expect("it was offered");
    }
    let (response, agreed) =
        http::switching_protocols((&head, &accept), protocol.as_deref(), &[], true);
    let expected = 3 + usize::from(protocol.is_some()) + usize::from(agreed.is_some());
    assert_complete_response(&response, Some(expected));
});

/// `bytes` is one whole HTTP response head (and body), with `headers` lines.
fn assert_complete_response(bytes: &[u8], headers: Option<usize>) {
    let mut slots = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut slots);
    let status = response.parse(bytes).expect("our response parses");
    assert!(status.is_complete());
    if let Some(headers) = headers {
        assert_eq!(response.code, Some(101));
        assert_eq!(response.headers.len(), headers);
        assert_eq!(status.unwrap(), bytes.len());
    }
}
