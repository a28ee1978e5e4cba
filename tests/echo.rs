//! The seed's first example, end to end: the `echo` guest over real sockets,
//! the same tests for the guest in every language (`rust::`, `js::`, `python::`, `c::`)
//! and as a coroutine (`rust_coro::`, `python_coro::`).

mod support;

use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error, Message};

in_every_language!(
    greets_every_message_twice,
    text_close_drops_tcp_without_close_frame,
    client_close_frame_ends_the_connection_politely,
    binary_messages_are_greeted_too,
    two_hundred_clients_are_answered_while_another_guest_waits_in_recv,
    a_client_that_vanishes_without_a_close_frame_is_gone_not_an_error,
);

async fn greets_every_message_twice(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    let mut ws = server.connect("/websocket").await;
    for word in ["hello", "мир"] {
        send_text(&mut ws, word).await;
        assert_eq!(next_text(&mut ws).await, format!("Привет, {word}!"));
        assert_eq!(next_text(&mut ws).await, format!("Как ты там, {word}?"));
    }
}

async fn text_close_drops_tcp_without_close_frame(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    let mut ws = server.connect("/websocket").await;
    send_text(&mut ws, "close").await;
    // The seed's close(): TCP goes away and no Close frame is ever sent.
    match next(&mut ws).await {
        Some(Err(Error::Protocol(_))) | Some(Err(Error::Io(_))) | None => {}
        other => panic!("expected the TCP connection to drop, got {other:?}"),
    }
}

async fn client_close_frame_ends_the_connection_politely(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    let mut ws = server.connect("/websocket").await;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    })))
    .await
    .unwrap();
    // The host answers the Close frame (completing the handshake), then the guest closes.
    assert_eq!(close_code(&mut ws).await, Some(1000));
}

async fn binary_messages_are_greeted_too(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    let mut ws = server.connect("/websocket").await;
    ws.send(Message::binary(b"bin".to_vec())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "Привет, bin!");
}

async fn two_hundred_clients_are_answered_while_another_guest_waits_in_recv(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    // This guest sits in recv() for the whole test.
    let mut idle = server.connect("/websocket").await;
    let clients = (0..200).map(|i| {
        let url = server.url("/websocket");
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url)
                .await
                .expect("connect");
            send_text(&mut ws, &format!("c{i}")).await;
            assert_eq!(next_text(&mut ws).await, format!("Привет, c{i}!"));
            assert_eq!(next_text(&mut ws).await, format!("Как ты там, c{i}?"));
        })
    });
    let started = std::time::Instant::now();
    for client in clients.collect::<Vec<_>>() {
        client.await.expect("client task");
    }
    eprintln!(
        "200 concurrent {lang:?} echo clients answered in {:?}",
        started.elapsed()
    );
    send_text(&mut idle, "still here").await;
    assert_eq!(next_text(&mut idle).await, "Привет, still here!");
}

async fn a_client_that_vanishes_without_a_close_frame_is_gone_not_an_error(lang: Lang) {
    let server = Server::start_in(lang, "/websocket", "echo");
    let mut ws = server.connect("/websocket").await;
    send_text(&mut ws, "hi").await;
    assert_eq!(next_text(&mut ws).await, "Привет, hi!");
    // Both replies read first: a push after the drop rightly fails, and the
    // guest logs that; what is checked here is what `recv` returns.
    assert_eq!(next_text(&mut ws).await, "Как ты там, hi?");
    drop(ws); // TCP closed without a Close frame
    server.wait_for_log("connection 1 ended").await;
    // The guest's recv returned `none` (the seed's `''`), not an error.
    let log = server.log();
    assert!(!log.contains("errorCode"), "{log}");
}

/// A component built against the contract as released (`echo` built at
/// commit bd29134, before topics and the event world were added to `wit/`)
/// runs unchanged.
#[tokio::test]
async fn a_component_built_before_the_event_world_still_works() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/echo-0.1.0.wasm");
    let server = Server::start_with(&[
        "--route".into(),
        format!("/websocket={}", fixture.display()),
    ]);
    let mut ws = server.connect("/websocket").await;
    send_text(&mut ws, "old").await;
    assert_eq!(next_text(&mut ws).await, "Привет, old!");
    assert_eq!(next_text(&mut ws).await, "Как ты там, old?");
}

/// A handler that leaves messages with the host (`mirror`: `recv_message`,
/// `push_message`) echoes 8 MiB without growing its instance; one that
/// copies them in (`echo`: `recv`) keeps the 8 MiB for the connection's
/// life, as wasm memory never shrinks. Eight connections each echo one
/// 8 MiB text and stay open; RSS is read before and after.
#[tokio::test]
async fn an_8_mib_echo_left_with_the_host_does_not_grow_the_instance() {
    const CONNS: usize = 8;
    const BIG: usize = 8 << 20;
    let mirror = ("/mirror", "mirror");
    let server = Server::start(&[mirror, ("/echo", "echo")]);
    let big = "x".repeat(BIG);
    let mut growth = Vec::new();
    for path in ["/mirror", "/echo"] {
        // The echo greets each message twice.
        let replies = if path == "/echo" { 2 } else { 1 };
        let mut clients = Vec::new();
        for _ in 0..CONNS {
            let mut ws = server.connect(path).await;
            send_text(&mut ws, "warm").await;
            for _ in 0..replies {
                next_text(&mut ws).await;
            }
            clients.push(ws);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let before = rss_of(server.pid());
        for ws in &mut clients {
            send_text(ws, &big).await;
            for _ in 0..replies {
                assert!(next_text(ws).await.len() >= BIG);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let after = rss_of(server.pid());
        let per_conn = after.saturating_sub(before) / CONNS as u64;
        eprintln!(
            "{path}: RSS {before} -> {after} bytes, {} KiB per connection",
            per_conn >> 10
        );
        growth.push(per_conn);
        // Still open, each still answers.
        for ws in &mut clients {
            send_text(ws, "still").await;
            for _ in 0..replies {
                next_text(ws).await;
            }
        }
    }
    assert!(
        growth[0] <= 64 << 10,
        "mirror grew {} KiB a connection",
        growth[0] >> 10
    );
    assert!(
        growth[1] >= 4 << 20,
        "echo (copying) grew only {} KiB a connection",
        growth[1] >> 10
    );
}

/// Messages left with the host go back out whole by every path that takes
/// one (`push`, a topic, the hub's broadcast and send-to), their slices read
/// as asked; a handler holds at most 64 at once and stops taking more once
/// they reach the message size limit, and a `recv_message` refused fails
/// without losing the message it would have taken.
#[tokio::test]
async fn held_messages_go_out_whole_every_way_and_64_at_most_are_held() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut a = server.connect("/probe?held=room").await;
    let mut b = server.connect("/probe?held=room").await;
    send_text(&mut a, "hello").await;
    assert_eq!(next_text(&mut a).await, "hello");
    a.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
    match next(&mut a).await {
        Some(Ok(Message::Binary(data))) => assert_eq!(&data[..], [0, 1, 2, 255]),
        other => panic!("expected the binary message back, got {other:?}"),
    }
    send_text(&mut a, "slice 0123456789").await;
    assert_eq!(next_text(&mut a).await, "16 e 01");
    send_text(&mut a, "pub to the room").await;
    assert_eq!(next_text(&mut a).await, "pub to the room");
    assert_eq!(next_text(&mut b).await, "pub to the room");
    send_text(&mut b, "all of the hub").await;
    assert_eq!(next_text(&mut a).await, "all of the hub");
    assert_eq!(next_text(&mut b).await, "all of the hub");
    // Connection ids count from 1: b is 2.
    send_text(&mut a, "to 2 from a").await;
    assert_eq!(next_text(&mut b).await, "to 2 from a");
    send_text(&mut a, "hold 70").await;
    for i in 0..70 {
        send_text(&mut a, &format!("m{i}")).await;
    }
    let held = next_text(&mut a).await;
    assert!(
        held.starts_with("64 ") && held.contains("holds 64 messages"),
        "{held}"
    );
    for i in 63..70 {
        assert_eq!(
            next_text(&mut a).await,
            format!("m{i}"),
            "the one refused was kept"
        );
    }
    send_text(&mut a, "hold 3").await;
    for i in 0..3 {
        send_text(&mut a, &format!("n{i}")).await;
    }
    assert_eq!(
        next_text(&mut a).await,
        "4 ok",
        "dropped messages free their places"
    );
    // By bytes: 6 + 600 held, then 600 more reach the 1,000-byte limit.
    let small = Server::start_flagged(&["--max-message-size", "1000"], &[("/probe", "probe")]);
    let mut c = small.connect("/probe?held=room").await;
    send_text(&mut c, "hold 5").await;
    let kept = "k".repeat(600);
    for _ in 0..4 {
        send_text(&mut c, &kept).await;
    }
    let held = next_text(&mut c).await;
    assert!(
        held.starts_with("3 ") && held.contains("holds 1206 bytes"),
        "{held}"
    );
    for _ in 0..2 {
        assert_eq!(next_text(&mut c).await, kept, "the refused ones are kept");
    }
}
