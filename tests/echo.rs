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
