//! Clients that misbehave get a clear answer (an HTTP status or a close
//! code), never a crash, a hang or unbounded memory, and never cost another
//! connection anything.

mod support;

use std::time::{Duration, Instant};
use support::raw::*;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// A binary frame header claiming `len` payload bytes, masked, with no payload.
fn header_claiming(len: u64, fin: bool) -> Vec<u8> {
    let mut header = vec![u8::from(fin) << 7 | BINARY, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_before_its_payload() {
    let server = Server::start_flagged(
        &["--max-message-size", "1048576"],
        &[("/mirror", "mirror"), ("/echo", "echo")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    let mut ws = RawWs::connect(&server, "/mirror").await;
    // 512 MiB announced, 10 bytes sent: the server must not wait for (or
    // allocate) the rest.
    ws.send_bytes(&header_claiming(512 << 20, true)).await;
    ws.send_bytes(&[0; 10]).await;
    assert_eq!(ws.close_code().await, Some(1009));
    assert_still_answers(&mut echo).await;
}

#[tokio::test]
async fn a_fragmented_message_over_the_limit_is_refused_before_it_ends() {
    let server =
        Server::start_flagged(&["--max-message-size", "1048576"], &[("/mirror", "mirror")]);
    let mut ws = RawWs::connect(&server, "/mirror").await;
    let piece = vec![7u8; 600 << 10];
    ws.send(&RawFrame::new(BINARY, piece.clone()).fin(false))
        .await;
    ws.send(&RawFrame::new(CONTINUATION, piece).fin(false))
        .await;
    // No final fragment is ever sent.
    assert_eq!(ws.close_code().await, Some(1009));
}

#[tokio::test]
async fn a_handshake_without_a_key_is_400_naming_it() {
    let server = Server::start(&[("/echo", "echo")]);
    let response = server
        .raw(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.contains("Sec-WebSocket-Key"), "{response}");
}

#[tokio::test]
async fn garbage_bytes_instead_of_a_request_are_400() {
    let server = Server::start(&[("/echo", "echo")]);
    let response = server
        .raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        .await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn an_oversized_request_head_is_431() {
    let server = Server::start(&[("/echo", "echo")]);
    // Too many bytes in a few headers, and too many headers.
    for (count, size) in [(20, 1024), (100, 8)] {
        let mut request = b"GET /echo HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..count {
            request.extend_from_slice(format!("x-filler-{i}: {}\r\n", "y".repeat(size)).as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        let response = server.raw(&request).await;
        assert!(
            response.starts_with("HTTP/1.1 431 "),
            "{count} headers: {response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_are_dropped_after_the_handshake_timeout() {
    let server = Server::start_flagged(&["--handshake-timeout", "1"], &[("/echo", "echo")]);
    let started = Instant::now();
    // One client says nothing at all; one sends its head a byte at a time.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut dribbler = TcpStream::connect(server.addr).await.unwrap();
    let dribble = tokio::spawn(async move {
        for byte in b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n".iter() {
            if dribbler.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        read_until_closed(&mut dribbler, Duration::from_secs(5)).await
    });
    // Meanwhile a well-behaved client is served at once.
    let mut echo = healthy_echo(&server, "/echo").await;
    let silent_response = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    let dribbler_response = dribble.await.unwrap();
    let took = started.elapsed();
    for response in [silent_response, dribbler_response] {
        assert!(response.starts_with("HTTP/1.1 408 "), "{response:?}");
    }
    assert!(
        took < Duration::from_secs(3),
        "slow clients held for {took:?}"
    );
    assert_still_answers(&mut echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connections_come_and_go_leaving_fds_and_rss_at_baseline() {
    const CYCLES: usize = 10_000;
    const PARALLEL: usize = 32;
    let server = Server::start(&[("/echo", "echo")]);
    let pid = server.pid();
    let url = server.url("/echo");
    let churn = |cycles: usize| {
        let url = url.clone();
        async move {
            let workers = (0..PARALLEL).map(|w| {
                let url = url.clone();
                tokio::spawn(async move {
                    for i in (w..cycles).step_by(PARALLEL) {
                        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
                        if i % 2 == 0 {
                            // Polite: a Close frame, answered by the host.
                            ws.close(None).await.unwrap();
                        } else if let MaybeTlsStream::Plain(tcp) = ws.get_mut() {
                            // Abrupt: TCP closed with no Close frame (our
                            // half only, so we still see the server's end).
                            tcp.shutdown().await.unwrap();
                        }
                        // Wait for the server to end its side: it never has
                        // more than PARALLEL connections open, so its memory
                        // peak is the same in every round.
                        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
                    }
                })
            });
            for worker in workers.collect::<Vec<_>>() {
                worker.await.unwrap();
            }
        }
    };
    // Warm up with a whole round: the allocator's arenas grow to the peak
    // concurrency they see and keep that size, so the baseline is the
    // warmed-up server and any growth after it is a leak.
    churn(CYCLES).await;
    let fds_before = settled_fds(pid, None).await;
    let rss_before = rss_of(pid);
    let started = Instant::now();
    churn(CYCLES).await;
    let took = started.elapsed();
    let fds_after = settled_fds(pid, Some(fds_before)).await;
    let rss_after = rss_of(pid);
    eprintln!(
        "churn: {CYCLES} cycles in {took:?}; fds {fds_before} -> {fds_after}; RSS {} -> {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert_eq!(fds_after, fds_before, "file descriptors leaked");
    assert!(
        rss_after < rss_before + (8 << 20),
        "RSS grew from {rss_before} to {rss_after} bytes over {CYCLES} cycles"
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    assert_still_answers(&mut echo).await;
}

/// The server's fd count once its connections have wound down: the first
/// count that holds for 200 ms, or `target` once reached (connections may
/// linger up to the close timeout, longer on a loaded machine).
async fn settled_fds(pid: u32, target: Option<usize>) -> usize {
    let deadline = Instant::now() + 3 * WAIT;
    let mut last = fds_of(pid);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fds_of(pid);
        if Some(now) == target || (target.is_none() && now == last) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// A panic of ours in a socket's task (injected: a debug build panics on a
/// message that begins with `WSHOST_TEST_PANIC`) ends that connection alone
/// and gives back all it held, in every world: its `--max-connections`
/// slot, its share of the in-flight budget, its topic subscriptions, its
/// guest's wait (the guest hears the connection end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_socket_task_leaks_nothing_in_any_world() {
    let mut command = wshost();
    command.env("WSHOST_TEST_PANIC", "boom");
    let mut args: Vec<String> = [
        "--max-connections",
        "2",
        "--max-in-flight",
        "100000",
        "--admin",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    let routes = [("/echo", "echo"), ("/chat", "chat"), ("/coro", "coro_chat")];
    args.extend(route_args(&routes));
    let server = Server::start_command(command, &args);
    let admin = support::admin::admin_addr(&server).await;
    // 90 KB of a 100 KB budget, held by the message as its task panics.
    let mut bomb = b"boom".to_vec();
    bomb.resize(90_000, b'x');
    let mut panics = 0;
    for (path, _) in routes {
        // More panics than slots: each must give its slot back.
        for _ in 0..3 {
            let mut ws = server.connect(path).await;
            let bomb = tokio_tungstenite::tungstenite::Message::binary(bomb.clone());
            futures_util::SinkExt::send(&mut ws, bomb).await.unwrap();
            assert_eq!(
                close_code(&mut ws).await,
                None,
                "{path}: dropped, no Close frame"
            );
            panics += 1;
            server
                .wait_for_logs("its socket's task panicked", panics)
                .await;
            // Its guest heard the connection end (the handler returned,
            // on-close ran, the coro task ended), and its slot came back.
            server.wait_for_logs(" ended", panics).await;
            none_open(&admin, path).await;
        }
    }

    // The budget is whole again: 90 KB more are read at once.
    let mut echo = healthy_echo(&server, "/echo").await;
    let large = "y".repeat(90_000);
    send_text(&mut echo, &large).await;
    assert_eq!(next_text(&mut echo).await, format!("Привет, {large}!"));
    // The panicked chat and coro sockets left the topic: a publish reaches
    // this one subscriber alone.
    let mut chat = server.connect("/chat").await;
    send_text(&mut chat, "hi").await;
    assert_eq!(next_text(&mut chat).await, "Сервер：hi");
    let (_, metrics) = support::admin::admin_get(&admin, "/metrics").await;
    use support::admin::sample;
    assert_eq!(
        sample(&metrics, "wshost_publish_fanout_sum"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"wshost_panics_total{task="socket"}"#),
        9.0
    );
    // Every charge came back (the 90 KB echo above would pass with one
    // leaked, through the overdraft's reserve; this gauge would not).
    assert!(metrics.contains("wshost_in_flight_bytes "), "{metrics}");
    assert_eq!(sample(&metrics, "wshost_in_flight_bytes"), 0.0, "{metrics}");
    drop((echo, chat));
    none_open(&admin, "/echo").await;
    none_open(&admin, "/chat").await;
    // Every slot comes back: two coro connections at once still fit.
    let mut a = server.connect("/coro").await;
    let mut b = server.connect("/coro").await;
    // Each hears its own message once subscribed (a coro task subscribes
    // after its 101); then a's hears b's.
    send_text(&mut a, "a").await;
    assert_eq!(next_text(&mut a).await, "Сервер：a");
    send_text(&mut b, "b").await;
    while next_text(&mut b).await != "Сервер：b" {}
    assert_eq!(next_text(&mut a).await, "Сервер：b");
}

/// Wait until route `path` has no connection open (its slots given back).
async fn none_open(admin: &str, path: &str) {
    let open = format!(r#"wshost_connections_open{{route="{path}"}}"#);
    support::admin::wait_for_sample(admin, &open, 0.0).await;
}

/// The review's M4: a frame header announcing 16 MiB took 16 MiB of the
/// in-flight budget before any payload came, so a few idle connections
/// that sent 14 bytes each froze large messages for everyone. Bytes are
/// now charged as they arrive: 64 such connections hold a 64 KiB slice
/// each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_announcing_large_frames_pin_only_a_slice() {
    let server = Server::start_flagged(
        &["--max-in-flight", "33554432"],
        &[("/mirror", "mirror"), ("/echo", "echo")],
    );
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut ws = RawWs::connect(&server, "/mirror").await;
        ws.send_bytes(&header_claiming(16 << 20, true)).await;
        idle.push(ws);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut echo = server.connect("/mirror").await;
    let large = vec![7u8; 1 << 20];
    futures_util::SinkExt::send(
        &mut echo,
        tokio_tungstenite::tungstenite::Message::binary(large.clone()),
    )
    .await
    .unwrap();
    match next(&mut echo).await {
        Some(Ok(msg)) => assert_eq!(msg.into_data(), large),
        other => panic!("no echo of 1 MiB: {other:?}"),
    }
    drop(idle);
}

/// The review's M3: fragments of 8 KiB or less were never charged, so 40
/// connections of unfinished fragmented messages held 404 MiB past a
/// 64 MiB --max-in-flight. Every byte of a message under way is charged
/// now: 40 connections sending 2 MiB each of unfinished fragments (80 MiB)
/// hold at most the budget (4 MiB) and its overdraft's reserve (4 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_small_fragments_are_charged_to_the_budget() {
    let server = Server::start_flagged(
        &[
            "--max-in-flight",
            "4194304",
            "--max-message-size",
            "4194304",
        ],
        &[("/mirror", "mirror"), ("/echo", "echo")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    let baseline = rss_of(server.pid());
    let mut senders = Vec::new();
    for _ in 0..40 {
        let mut ws = RawWs::connect(&server, "/mirror").await;
        senders.push(tokio::spawn(async move {
            let piece = vec![3u8; 8 << 10];
            ws.send(&RawFrame::new(BINARY, piece.clone()).fin(false))
                .await;
            for _ in 1..256 {
                ws.send(&RawFrame::new(CONTINUATION, piece.clone()).fin(false))
                    .await;
            }
            ws
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let during = rss_of(server.pid());
    eprintln!(
        "80 MiB of unfinished fragments: RSS {} KiB -> {} KiB",
        baseline / 1024,
        during / 1024
    );
    assert!(
        during < baseline + (32 << 20),
        "RSS grew from {baseline} to {during} bytes"
    );
    assert_still_answers(&mut echo).await;
    for sender in senders {
        sender.abort();
    }
}
