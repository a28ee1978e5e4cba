//! Peers that do not read: a guest's push waits for its own socket, and a
//! slow hub subscriber is evicted instead of stalling the others or growing
//! the server's memory.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_a_client_that_does_not_read_waits_for_it_in_bounded_memory() {
    let server = Server::start(&[("/echo", "echo"), ("/flood", "flood")]);
    let mut echo = healthy_echo(&server, "/echo").await;
    let before = rss_of(server.pid());
    let flooded = non_reader(&server, "/flood").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = rss_of(server.pid());
    assert_still_answers(&mut echo).await;
    drop(flooded);
    server.wait_for_log("flood ended after").await;
    let log = server.log();
    let sent: u64 = log
        .split("flood ended after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the flood guest's count");
    eprintln!(
        "flood: {sent} pushes of 64 KiB went out before the client left; server RSS {} -> {} KiB",
        before / 1024,
        during / 1024
    );
    // Only what the kernel's socket buffers hold went out: push waited.
    assert!(
        sent < 256,
        "{sent} pushes of 64 KiB to a client that never read"
    );
    assert!(
        during < before + (32 << 20),
        "server RSS grew from {before} to {during} bytes"
    );
    assert_still_answers(&mut echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_hub_subscriber_is_evicted_with_1008_and_stalls_nobody() {
    const MESSAGES: usize = 300;
    let server = Server::start_flagged(&["--hub-queue", "16"], &[("/chat", "broadcast")]);
    let (mut sender_tx, mut sender_rx) = server.connect("/chat").await.split();
    let mut reader = server.connect("/chat").await;
    let mut slow = non_reader(&server, "/chat").await;
    let payload = "x".repeat(64 << 10);
    let sending = tokio::spawn(async move {
        for i in 0..MESSAGES {
            sender_tx
                .send(Message::text(format!("{i}:{payload}")))
                .await
                .unwrap();
        }
        sender_tx
    });
    // Both healthy members get every message, in order, while `slow` stalls.
    let own = tokio::spawn(async move {
        for i in 0..MESSAGES {
            let text = next_text_of(&mut sender_rx).await;
            assert!(text.starts_with(&format!("Сервер：{i}:")), "{i}");
        }
    });
    for i in 0..MESSAGES {
        let text = next_text(&mut reader).await;
        assert!(text.starts_with(&format!("Сервер：{i}:")), "{i}");
    }
    own.await.unwrap();
    let _sender = sending.await.unwrap();
    server
        .wait_for_log("connection evicted: 16 messages or")
        .await;
    // The slow client gets what was in flight, then the connection ends.
    let mut got = 0;
    let end = loop {
        match next(&mut slow).await {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(Message::Close(frame))) => break format!("Close {frame:?}"),
            other => break format!("{other:?}"),
        }
    };
    eprintln!("slow subscriber: {got} of {MESSAGES} messages, then {end}");
    assert!(got < MESSAGES, "the slow subscriber was never cut off");
    assert!(
        end.contains("Policy") || end.contains("None") || end.contains("Err"),
        "{end}"
    );
    // The server did not buffer the slow member's backlog.
    assert!(rss_of(server.pid()) < 200 << 20);
}

async fn next_text_of(stream: &mut futures_util::stream::SplitStream<Client>) -> String {
    match tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("no message within the wait")
    {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_is_evicted_by_bytes_too() {
    // 1,024 messages would be 64 MiB here; 1 MiB of them evicts.
    let server =
        Server::start_flagged(&["--hub-queue-bytes", "1048576"], &[("/chat", "broadcast")]);
    let mut sender = server.connect("/chat").await;
    let _slow = non_reader(&server, "/chat").await;
    let payload = "x".repeat(64 << 10);
    for i in 0..64 {
        sender
            .send(Message::text(format!("{i}:{payload}")))
            .await
            .unwrap();
        let own = next_text(&mut sender).await;
        assert!(own.contains(&format!("{i}:")), "{i}");
    }
    server
        .wait_for_log("connection evicted: 1024 messages or 1048576 bytes")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_returns_to_baseline_after_a_burst_of_large_messages() {
    const CLIENTS: usize = 40;
    // The event world: one instance for all, so what stays is the host's.
    // (A handler-world instance keeps the linear memory it grew to hold a
    // large message until its connection ends: wasm memories never shrink.)
    let server = Server::start(&[("/events", "event_mirror")]);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.connect("/events").await);
    }
    let baseline = rss_of(server.pid());
    // Every client echoes 4 MiB once, all at the same time: 160 MiB read
    // and as much written.
    let big = Message::binary(vec![7u8; 4 << 20]);
    let mut echoes = Vec::new();
    for mut ws in clients {
        let big = big.clone();
        echoes.push(tokio::spawn(async move {
            ws.send(big.clone()).await.unwrap();
            assert_eq!(next(&mut ws).await.unwrap().unwrap(), big);
            ws
        }));
    }
    let mut clients = Vec::new();
    for echo in echoes {
        clients.push(echo.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_of(server.pid());
    eprintln!(
        "RSS with {CLIENTS} idle sockets: {} KiB before, {} KiB after each echoed 4 MiB",
        baseline / 1024,
        after / 1024
    );
    assert!(
        after < baseline + (24 << 20),
        "RSS grew from {baseline} to {after} bytes and stayed"
    );
    for ws in &mut clients {
        ws.send(Message::text("still here")).await.unwrap();
        assert_eq!(next_text(ws).await, "still here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_wait_for_the_in_flight_budget_and_small_ones_do_not() {
    const CLIENTS: usize = 10;
    // The budget, and its overdraft's reserve (the largest message): at
    // most 8 + 4 MiB in flight.
    let server = Server::start_flagged(
        &[
            "--max-in-flight",
            "8388608",
            "--max-message-size",
            "4194304",
        ],
        &[("/probe", "probe"), ("/echo", "echo")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    let baseline = rss_of(server.pid());
    // Ten guests that do not read for 2 s, each sent 4 MiB: 40 MiB that
    // would wait in the host; the budget lets 8 MiB of it in.
    let mut senders = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = server.connect("/probe?nap=2000").await;
        assert_eq!(next_text(&mut ws).await, "napping");
        senders.push(tokio::spawn(async move {
            ws.send(Message::binary(vec![1u8; 4 << 20])).await.unwrap();
            ws
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let during = rss_of(server.pid());
    // Small messages are never held up by the budget.
    assert_still_answers(&mut echo).await;
    eprintln!(
        "in-flight budget 8 MiB: RSS {} KiB idle, {} KiB with 40 MiB sent to guests not reading",
        baseline / 1024,
        during / 1024
    );
    assert!(
        during < baseline + (20 << 20),
        "RSS grew from {baseline} to {during} bytes"
    );
    server.wait_for_log("waits for the in-flight budget").await;
    // Once the guests read, every message gets through.
    for sender in senders {
        let mut ws = sender.await.unwrap();
        assert_eq!(next_text(&mut ws).await, (4 << 20).to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_keeps_no_read_buffer_once_its_message_is_read() {
    const CLIENTS: usize = 1_000;
    raise_fd_limit();
    let server = Server::start(&[("/events", "event_mirror")]);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(server.connect("/events").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet = rss_of(server.pid());
    for ws in &mut clients {
        send_text(ws, "hello").await;
        assert_eq!(next_text(ws).await, "hello");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_of(server.pid());
    // A read takes an 8 KiB chunk; a socket back to waiting gives it back
    // (it once kept it: the socket's readiness outlived the read).
    let per_socket = after.saturating_sub(quiet) / CLIENTS as u64;
    eprintln!("RSS per socket grew {per_socket} bytes once each echoed a message");
    assert!(per_socket < 2048, "each socket kept {per_socket} bytes");
}

/// The review's M5 (reading): timeouts measure progress, not completion.
/// A 256 KiB message arriving in pieces over 2.5 s is not silence to an
/// idle timeout of 1 s: any byte read counts as the peer heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upload_outlives_the_idle_timeout() {
    use support::raw::*;
    let server = Server::start_flagged(
        &["--idle-timeout", "1", "--ping-interval", "0"],
        &[("/mirror", "mirror")],
    );
    let mut ws = RawWs::connect(&server, "/mirror").await;
    let payload: Vec<u8> = (0..256 << 10).map(|i| i as u8).collect();
    let bytes = RawFrame::new(BINARY, payload.clone()).encode(Some([9, 8, 7, 6]));
    for piece in bytes.chunks(bytes.len() / 16 + 1) {
        ws.send_bytes(piece).await;
        tokio::time::sleep(Duration::from_millis(160)).await;
    }
    let echoed = ws.recv().await.expect("the message echoed, not a drop");
    assert_eq!(echoed.opcode, BINARY);
    assert_eq!(echoed.payload, payload);
}

/// The review's M5 (writing): the write timeout is a time in which the
/// peer takes no byte, not one for a whole batch. A client reading 2 MiB
/// slowly but steadily (through a small receive buffer) over seconds gets
/// it all with --write-timeout 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_reader_outlives_the_write_timeout() {
    use support::raw::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_flagged(&["--write-timeout", "2"], &[("/mirror", "mirror")]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(server.addr).await.unwrap();
    let request = "GET /mirror HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(request.as_bytes()).await.unwrap();
    let size = 2 << 20;
    let frame = RawFrame::new(BINARY, vec![5u8; size]).encode(Some([1, 2, 3, 4]));
    tcp.write_all(&frame).await.unwrap();
    // The 101, then the echo's header (10 bytes) and payload, read slowly.
    let mut got = 0;
    let mut chunk = vec![0u8; 16 << 10];
    let started = std::time::Instant::now();
    while got < size {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut chunk))
            .await
            .expect("the server keeps writing")
            .unwrap();
        assert!(
            n > 0,
            "dropped after {got} bytes in {:?}: {}",
            started.elapsed(),
            server.log()
        );
        got += n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("2 MiB read slowly in {:?}", started.elapsed());
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "read too fast to test anything"
    );
}
