//! Behind a layer-4 balancer (`--trusted-proxy` with `--proxy-protocol`):
//! the PROXY header it sends ahead of the client's bytes names the client,
//! guests get that as `remote-addr`; a trusted peer that sends none is
//! dropped, and nobody else can name a client. Headers are written by hand
//! here, v1 text and v2 binary, as HAProxy and AWS NLB send them. (Over TLS:
//! `tests/tls.rs`; `X-Forwarded-For` and the quarantine: `tests/coro.rs`.)

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Everything the server sends back to `bytes` from 127.0.0.`host`, until
/// it closes.
async fn exchange(server: &Server, host: u8, bytes: &[u8]) -> String {
    let mut tcp = tcp_from(server, host).await;
    tcp.write_all(bytes).await.unwrap();
    read_until_closed(&mut tcp, WAIT).await
}

const ASK_PEER: &str = "GET /p?peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// A v2 PROXY header for a TCP client at `source` (IPv4).
fn v2(source: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(source) = source else {
        panic!("an IPv4 source")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11]); // PROXY command; TCP over IPv4
    header.extend_from_slice(&12u16.to_be_bytes());
    header.extend_from_slice(&source.ip().octets());
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&8080u16.to_be_bytes());
    header
}

fn balanced() -> Server {
    Server::start_flagged(
        &[
            "--trusted-proxy",
            "127.0.0.2",
            "--proxy-protocol",
            "--handshake-timeout",
            "1",
        ],
        &[("/p", "probe"), ("/echo", "echo")],
    )
}

#[tokio::test]
async fn the_balancer_s_header_names_the_client_guests_see() {
    let server = balanced();
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n{ASK_PEER}");
    let answer = exchange(&server, 2, v1.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("203.0.113.7:51000"), "{answer}");

    let mut bytes = v2("198.51.100.4:4711".parse().unwrap());
    bytes.extend_from_slice(ASK_PEER.as_bytes());
    let answer = exchange(&server, 2, &bytes).await;
    assert!(answer.ends_with("198.51.100.4:4711"), "{answer}");

    // A WebSocket behind it works as any other.
    let mut tcp = tcp_from(&server, 2).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51001 8080\r\n")
        .await
        .unwrap();
    let url = format!("ws://{}/echo", server.addr);
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    send_text_to(&mut ws, "through the balancer").await;
    let echoed = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut ws)).await;
    let echoed = echoed.unwrap().unwrap().unwrap();
    let echoed = echoed.into_text().unwrap();
    assert!(echoed.contains("through the balancer"), "{echoed}");
}

async fn send_text_to(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, text: &str) {
    use futures_util::SinkExt;
    let msg = tokio_tungstenite::tungstenite::Message::text(text);
    ws.send(msg).await.unwrap();
}

#[tokio::test]
async fn a_trusted_peer_without_a_header_is_dropped_and_no_one_else_can_send_one() {
    let server = balanced();
    // The balancer's connection without a header: dropped, unanswered.
    let answer = exchange(&server, 2, ASK_PEER.as_bytes()).await;
    assert_eq!(answer, "");
    server
        .wait_for_log("dropped: no PROXY protocol header")
        .await;
    // A header that never ends: dropped at the handshake timeout.
    let mut tcp = tcp_from(&server, 2).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7").await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
    assert_eq!(read.expect("dropped in time").unwrap_or(0), 0);
    server
        .wait_for_log("dropped: no complete PROXY header within")
        .await;
    // Anyone else is served as the peer it is, and a header from it is no
    // HTTP request.
    let answer = exchange(&server, 3, ASK_PEER.as_bytes()).await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(body.starts_with("127.0.0.3:"), "{answer}");
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n{ASK_PEER}");
    let answer = exchange(&server, 3, v1.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[test]
fn proxy_protocol_without_a_trusted_proxy_is_refused() {
    let out = wshost()
        .args(["serve", "--listen", "127.0.0.1:0", "--proxy-protocol"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs trusted_proxies (--trusted-proxy)"),
        "{stderr}"
    );
}

/// The review's minor: the handshake timeout applied to the PROXY header,
/// the TLS handshake and the request head each, so a peer could take
/// three times as long. One deadline covers them all now: a header at
/// 0.7 s and a head at 1.4 s miss a 1 s handshake timeout.
#[tokio::test]
async fn one_handshake_deadline_covers_the_proxy_header_and_the_head() {
    let server = balanced();
    let mut tcp = tcp_from(&server, 2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8080\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _ = tcp.write_all(ASK_PEER.as_bytes()).await;
    let answer = read_until_closed(&mut tcp, WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}
