//! The coro world's failures: a trap or a runaway task ends every task of
//! its instance (their connections get 1011), the client whose task did it
//! is served alone from then on, and refused once it crashes that too.
//! Clients come from different loopback addresses (127.0.0.2, .3, ...) so
//! the host can tell them apart.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::MaybeTlsStream;

/// A WebSocket to `path` from source address 127.0.0.`host`.
async fn connect_from(server: &Server, host: u8, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
    socket.bind(source).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}{path}", server.addr);
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)),
    )
    .await
    .expect("handshake timed out")
    .expect("handshake");
    ws
}

async fn echoes(ws: &mut Client, text: &str) {
    send_text(ws, text).await;
    assert_eq!(next_text(ws).await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_ends_its_instance_and_the_client_behind_it_is_isolated_then_refused() {
    let server = Server::start(&[("/p", "coro_probe")]);
    let mut victim = connect_from(&server, 2, "/p").await;
    let mut culprit = connect_from(&server, 3, "/p").await;
    echoes(&mut victim, "hi").await;
    send_text(&mut victim, "count").await;
    assert_eq!(next_text(&mut victim).await, "2", "one instance, two tasks");

    // The culprit's task traps: every task of the instance ends with 1011.
    send_text(&mut culprit, "panic").await;
    assert_eq!(close_code(&mut victim).await, Some(1011));
    assert_eq!(close_code(&mut culprit).await, Some(1011));
    server
        .wait_for_log("crashed a shared instance: served alone")
        .await;

    // Others get a fresh shared instance; the culprit an instance of its own.
    let mut victim = connect_from(&server, 2, "/p").await;
    let mut bystander = connect_from(&server, 4, "/p").await;
    let mut culprit = connect_from(&server, 3, "/p").await;
    echoes(&mut victim, "again").await;
    send_text(&mut victim, "count").await;
    assert_eq!(
        next_text(&mut victim).await,
        "2",
        "victim and bystander share"
    );
    send_text(&mut culprit, "count").await;
    assert_eq!(next_text(&mut culprit).await, "1", "the culprit is alone");

    // Its next crash costs no one else, and it is refused from then on.
    send_text(&mut culprit, "panic").await;
    assert_eq!(close_code(&mut culprit).await, Some(1011));
    server
        .wait_for_log("crashed its own instance: refused")
        .await;
    echoes(&mut victim, "still here").await;
    echoes(&mut bystander, "me too").await;
    let refused = tokio::net::TcpSocket::new_v4().unwrap();
    refused
        .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), 0))
        .unwrap();
    let mut tcp = refused.connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET /p HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tokio::io::AsyncWriteExt::write_all(&mut tcp, handshake.as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp, WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_computes_forever_is_stopped_by_its_instances_cpu_limit() {
    let server = Server::start_flagged(&["--guest-cpu-timeout", "0.3"], &[("/p", "coro_probe")]);
    let mut other = connect_from(&server, 2, "/p").await;
    let mut spinner = connect_from(&server, 3, "/p").await;
    echoes(&mut other, "hi").await;
    let started = Instant::now();
    send_text(&mut spinner, "spin").await;
    assert_eq!(close_code(&mut spinner).await, Some(1011));
    assert_eq!(close_code(&mut other).await, Some(1011));
    assert!(started.elapsed() < Duration::from_secs(5));
    server.wait_for_log("handler stopped: ran for over").await;
    // The route goes on with a fresh instance.
    let mut next = connect_from(&server, 2, "/p").await;
    echoes(&mut next, "alive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_socket_ends_its_task() {
    let server = Server::start(&[("/p", "coro_probe")]);
    let mut stays = server.connect("/p").await;
    let leaves = server.connect("/p").await;
    send_text(&mut stays, "count").await;
    assert_eq!(next_text(&mut stays).await, "2");
    drop(leaves); // TCP closed without a Close frame: recv returns none
    let deadline = Instant::now() + WAIT;
    loop {
        send_text(&mut stays, "count").await;
        if next_text(&mut stays).await == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "the task never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
