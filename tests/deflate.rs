//! permessage-deflate (RFC 7692) against clients no one here wrote: Python
//! `websockets`, Node `ws` and Chromium, in both worlds; and on the wire,
//! what the host sends compressed and what it refuses.

mod support;

use flate2::{Decompress, FlushDecompress};
use std::time::Duration;
use support::clients::run_client;
use support::raw::{CLOSE, RawFrame, RawWs, TEXT};
use support::*;

fn deflate_server() -> Server {
    Server::start_flagged(
        &["--deflate"],
        &[
            ("/mirror", "mirror"),
            ("/events", "event_mirror"),
            ("/", "page"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn python_websockets_in_both_worlds() {
    let server = deflate_server();
    for path in ["/mirror", "/events"] {
        let url = server.url(path);
        let out = tokio::task::spawn_blocking(move || {
            run_client(".venv/bin/python", "deflate.py", &url, &[])
        })
        .await
        .unwrap();
        assert!(out.contains("client_max_window_bits=10"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_ws_in_both_worlds() {
    let server = deflate_server();
    for path in ["/mirror", "/events"] {
        let url = server.url(path);
        tokio::task::spawn_blocking(move || run_client("node", "deflate.mjs", &url, &[]))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_in_both_worlds() {
    let server = deflate_server();
    let url = format!("http://{}/", server.addr);
    let seen = tokio::task::spawn_blocking(move || {
        let browser = support::webdriver::Browser::start()?;
        browser.open(&url);
        browser.eval(
            r#"window.results = [];
            const big = 'all work and no play makes Jack a dull boy. '.repeat(20000);
            for (const path of ['/mirror', '/events']) {
              const ws = new WebSocket('ws://' + location.host + path);
              const sent = ['short', big, big.slice(7), 'short again'];
              const got = [];
              ws.onopen = () => sent.forEach(m => ws.send(m));
              ws.onmessage = e => {
                got.push(e.data);
                if (got.length === sent.length) {
                  const same = got.every((m, i) => m === sent[i]);
                  window.results.push(path + ' ' + ws.extensions + ' ' + (same ? 'same' : 'DIFFERENT'));
                  ws.close();
                }
              };
              ws.onclose = e => { if (got.length < sent.length) window.results.push(path + ' closed ' + e.code); };
            }"#,
        );
        let done = browser.wait_for(
            "return window.results.length === 2 ? window.results.join('\\n') + '\\ndone' : ''",
            "done",
            Duration::from_secs(20),
        );
        Some(done)
    })
    .await
    .unwrap();
    let Some(seen) = seen else {
        assert!(
            std::env::var_os("WSHOST_SKIP_BROWSER").is_some(),
            "no chromium"
        );
        return;
    };
    for path in ["/mirror", "/events"] {
        let line = seen
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_default();
        assert!(
            line.contains("permessage-deflate") && line.ends_with("same"),
            "{seen}\n{}",
            server.log()
        );
    }
}

/// The raw handshake offering `extensions`; the response head.
async fn offer(server: &Server, path: &str, extensions: &str) -> String {
    server
        .raw_upgrade(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: {extensions}\r\n\r\n"
        ))
        .await
}

#[tokio::test]
async fn negotiation_is_off_by_default_and_declines_what_it_cannot_honour() {
    let plain = Server::start(&[("/mirror", "mirror")]);
    let head = offer(&plain, "/mirror", "permessage-deflate").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");

    let server = deflate_server();
    let head = offer(&server, "/mirror", "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_no_context_takeover").await;
    assert!(
        head.contains("sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
        "{head}"
    );
    let head = offer(&server, "/mirror", "permessage-deflate; bogus=1").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn the_host_sends_compressed_and_refuses_rsv1_without_deflate() {
    let server = deflate_server();
    let mut ws = RawWs::connect_with(
        &server,
        "/mirror",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    let text = "compress me, compress me, compress me. ".repeat(100);
    ws.send(&RawFrame::new(TEXT, text.as_bytes())).await;
    let echo = ws.recv().await.unwrap();
    assert_eq!(echo.rsv, 0b100, "RSV1: compressed");
    assert!(
        echo.payload.len() < text.len() / 10,
        "{} bytes",
        echo.payload.len()
    );
    let mut inflate = Decompress::new(false);
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut input = echo.payload.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    inflate
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);
    // Short messages go as they are.
    ws.send(&RawFrame::new(TEXT, "hi")).await;
    assert_eq!(ws.recv().await.unwrap(), RawFrame::new(TEXT, "hi"));

    // Without deflate agreed, RSV1 is a protocol error (1002).
    let plain = Server::start(&[("/mirror", "mirror")]);
    let mut ws = RawWs::connect(&plain, "/mirror").await;
    ws.send(&RawFrame::new(TEXT, "x").rsv(0b100)).await;
    assert_eq!(ws.close_code().await, Some(1002));
    let _ = CLOSE;
}

#[tokio::test]
async fn a_compressed_bomb_is_refused_with_1009() {
    let server = Server::start_flagged(
        &["--deflate", "--max-message-size", "100000"],
        &[("/mirror", "mirror")],
    );
    let mut ws = RawWs::connect_with(
        &server,
        "/mirror",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .await;
    // 10 MB of zeros deflates to ~10 KB: under every frame limit, far over
    // the message limit once inflated.
    let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(1 << 20);
    deflate
        .compress_vec(
            &vec![0u8; 10_000_000],
            &mut bomb,
            flate2::FlushCompress::Sync,
        )
        .unwrap();
    bomb.truncate(bomb.len() - 4);
    assert!(bomb.len() < 100_000);
    ws.send(&RawFrame::new(TEXT, bomb).rsv(0b100)).await;
    assert_eq!(ws.close_code().await, Some(1009));
    assert!(rss_of(server.pid()) < 200 << 20);
}
