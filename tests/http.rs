//! Plain HTTP: the seed's page, unknown paths, requests that are no handshake,
//! handlers that answer badly.

mod support;

use support::*;

#[tokio::test]
async fn page_is_served_as_html_with_the_seed_heading() {
    let server = Server::start(&[("/", "page"), ("/websocket", "echo")]);
    let response = server.get("/").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("content-type: text/html; charset=utf-8\r\n"),
        "{response}"
    );
    assert!(
        response.contains("<h1>Сервер WebSocket Swoole</h1>"),
        "{response}"
    );
    assert!(
        response.contains("location.host + '/websocket'"),
        "{response}"
    );
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = Server::start(&[("/", "page")]);
    let response = server.get("/nowhere").await;
    assert!(
        response.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{response}"
    );
    // Routing is by exact path: no prefix matching.
    assert!(server.get("/websocket/x").await.starts_with("HTTP/1.1 404"));
}

#[tokio::test]
async fn plain_get_on_the_websocket_route_is_400_not_a_hang() {
    let server = Server::start(&[("/websocket", "echo")]);
    let response = server.get("/websocket").await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.contains("Upgrade: websocket"), "{response}");
    // The client's mistake is not logged as the handler's failure.
    server.wait_for_log("connection 1 ended").await;
    let log = server.log();
    assert!(log.contains("error after a bad handshake"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

#[tokio::test]
async fn wrong_websocket_version_is_426_naming_13() {
    let server = Server::start(&[("/websocket", "echo")]);
    let response = server
        .raw(b"GET /websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
        .await;
    assert!(
        response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{response}"
    );
    assert!(
        response.contains("sec-websocket-version: 13\r\n"),
        "{response}"
    );
}

#[tokio::test]
async fn garbage_request_line_is_400() {
    let server = Server::start(&[("/", "page")]);
    let response = server.raw(b"\x16\x03\x01 hello there\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    // The server is still there for the next client.
    assert!(server.get("/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn handler_that_neither_upgrades_nor_responds_gets_500() {
    let server = Server::start(&[("/probe", "probe")]);
    let response = server.get("/probe?no-answer").await;
    assert!(
        response.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{response}"
    );
    assert!(
        response.contains("returned without upgrading or responding"),
        "{response}"
    );
}

#[tokio::test]
async fn handler_error_before_upgrade_is_500_with_reason() {
    let server = Server::start(&[("/probe", "probe")]);
    let response = server.get("/probe?fail-before-upgrade").await;
    assert!(response.starts_with("HTTP/1.1 500"), "{response}");
    assert!(response.contains("failing on purpose"), "{response}");
}

#[tokio::test]
async fn head_request_gets_headers_without_body() {
    let server = Server::start(&[("/", "page")]);
    let response = server.raw(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\n"), "{response}");
}

#[tokio::test]
async fn guest_stdout_and_stderr_reach_the_log_tagged_with_route_and_connection() {
    let server = Server::start(&[("/probe", "probe")]);
    assert!(server.get("/probe?log").await.starts_with("HTTP/1.1 204"));
    server.wait_for_log("hello from the guest's stderr").await;
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("hello from the guest's stdout"))
        .expect("stdout line");
    assert!(
        line.contains("route=/probe") && line.contains("conn=1"),
        "{line}"
    );
}
