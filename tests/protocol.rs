//! WebSocket behaviour of the host: opcodes, fragments, pings, timeouts, close codes.

mod support;

use futures_util::SinkExt;
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn mirror_keeps_each_messages_opcode() {
    let server = Server::start(&[("/mirror", "mirror")]);
    let mut ws = server.connect("/mirror").await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for msg in [
        Message::text("text stays text"),
        Message::binary(vec![0u8, 159, 146, 150]),
        Message::binary(big),
    ] {
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(next(&mut ws).await.unwrap().unwrap(), msg);
    }
}

#[tokio::test]
async fn host_answers_pings() {
    let server = Server::start(&[("/mirror", "mirror")]);
    let mut ws = server.connect("/mirror").await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Pong(b"are you there".to_vec().into())
    );
}

#[tokio::test]
async fn fragmented_message_from_the_client_reaches_the_guest_whole() {
    let server = Server::start(&[("/mirror", "mirror")]);
    let mut ws = server.connect("/mirror").await;
    ws.send(Message::Frame(Frame::message(
        b"frag".to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        b"mented".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, "fragmented");
}

#[tokio::test]
async fn recv_timeout_returns_a_timeout_error() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?timeout=200").await;
    let started = Instant::now();
    assert_eq!(next_text(&mut ws).await, "timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(190),
        "timed out after only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "timeout took {waited:?}");
}

#[tokio::test]
async fn recv_with_timeout_still_gets_a_frame_that_arrives_in_time() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?timeout=5000").await;
    send_text(&mut ws, "in time").await;
    assert_eq!(next_text(&mut ws).await, "frame in time");
}

#[tokio::test]
async fn fragmented_push_arrives_as_one_message() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?fragments").await;
    assert_eq!(next_text(&mut ws).await, "Hello, world");
}

#[tokio::test]
async fn binary_push_arrives_as_binary() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?binary").await;
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
}

#[tokio::test]
async fn handler_returning_after_upgrade_closes_with_1000() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?upgrade-then-return").await;
    assert_eq!(close_code(&mut ws).await, Some(1000));
}

#[tokio::test]
async fn handler_error_after_upgrade_closes_with_1011() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?fail-after-upgrade").await;
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1011);
            assert_eq!(frame.reason.as_str(), "failing on purpose");
        }
        other => panic!("expected a 1011 Close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn push_close_sends_the_guests_code_and_reason() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?push-close").await;
    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 4000);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected a 4000 Close frame, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_utf8_text_is_closed_with_1007() {
    let server = Server::start(&[("/mirror", "mirror")]);
    let mut ws = server.connect("/mirror").await;
    ws.send(Message::Frame(Frame::message(
        vec![0xff, 0xfe],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1007));
}

#[tokio::test]
async fn message_over_the_size_limit_is_closed_with_1009() {
    let server = Server::start_with(&[
        "--max-message-size".into(),
        "1024".into(),
        "--route".into(),
        format!("/mirror={}", guest("mirror").display()),
    ]);
    let mut ws = server.connect("/mirror").await;
    ws.send(Message::binary(vec![7u8; 1000])).await.unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::binary(vec![7u8; 1000])
    );
    ws.send(Message::binary(vec![7u8; 4096])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

#[tokio::test]
async fn hub_lists_this_connection() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?id").await;
    let reply = next_text(&mut ws).await;
    let (id, live) = reply.split_once(' ').unwrap();
    assert!(id.parse::<u64>().unwrap() >= 1, "{reply}");
    assert_eq!(live, "1", "{reply}");
}

/// A guest that closes while its inbox is full (it never read what the
/// client sent) still hears the client's Close reply: a closing socket
/// reads on, dropping the messages that crossed its Close, and ends
/// cleanly at once instead of at the close timeout (3 s) with unread bytes.
#[tokio::test]
async fn a_close_with_a_full_inbox_still_reads_the_peers_reply() {
    use support::raw::{RawFrame, RawWs, TEXT};
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = RawWs::connect(&server, "/probe?nap-close=300").await;
    let napping = ws.recv().await.expect("napping");
    assert_eq!(napping.payload, b"napping");
    // Past the inbox's 256 messages while the guest naps.
    for i in 0..400 {
        ws.send(&RawFrame::new(TEXT, format!("m{i}"))).await;
    }
    assert_eq!(ws.close_code().await, Some(4000));
    let replied = Instant::now();
    ws.send(&RawFrame::close(4000, b"")).await;
    assert_eq!(ws.recv().await.map(|f| f.opcode), None, "then TCP ends");
    assert!(
        replied.elapsed() < Duration::from_secs(1),
        "ended {:?} after the reply",
        replied.elapsed()
    );
}
