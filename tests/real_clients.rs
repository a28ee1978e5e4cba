//! What real clients on real networks need: subprotocols and 101 headers,
//! origin checks, strict handshakes, answers a client can read, guest logs
//! that cannot lie, and the fixes a review of the host found.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Open `path` offering `protocols` (and sending `origin`, if given);
/// returns the response's status, subprotocol and set-cookie.
async fn handshake(
    server: &Server,
    path: &str,
    protocols: &str,
    origin: Option<&str>,
) -> (u16, Option<String>, Option<String>, Option<Client>) {
    let mut request = server.url(path).into_client_request().unwrap();
    if !protocols.is_empty() {
        let offer = HeaderValue::from_str(protocols).unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", offer);
    }
    if let Some(origin) = origin {
        let origin = HeaderValue::from_str(origin).unwrap();
        request.headers_mut().insert("origin", origin);
    }
    let header = |r: &tokio_tungstenite::tungstenite::handshake::client::Response, name| {
        r.headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
    };
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out")
    {
        Ok((ws, response)) => (
            response.status().as_u16(),
            header(&response, "sec-websocket-protocol"),
            header(&response, "set-cookie"),
            Some(ws),
        ),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None, None, None)
        }
        Err(e) => panic!("handshake with {path}: {e}"),
    }
}

#[tokio::test]
async fn a_handler_picks_a_subprotocol_and_adds_101_headers() {
    let server = Server::start(&[("/mirror", "mirror"), ("/probe", "probe")]);
    // The mirror picks the first offered subprotocol.
    let (status, protocol, _, ws) =
        handshake(&server, "/mirror", "graphql-transport-ws, chat", None).await;
    assert_eq!(
        (status, protocol.as_deref()),
        (101, Some("graphql-transport-ws"))
    );
    let mut ws = ws.unwrap();
    send_text(&mut ws, "still a mirror").await;
    assert_eq!(next_text(&mut ws).await, "still a mirror");
    // No offer: no subprotocol in the answer.
    let (status, protocol, _, _) = handshake(&server, "/mirror", "", None).await;
    assert_eq!((status, protocol), (101, None));

    // The probe picks `chat` and sets a cookie.
    let (status, protocol, cookie, ws) =
        handshake(&server, "/probe?protocol=chat", "mqtt, chat", None).await;
    assert_eq!(status, 101);
    assert_eq!(protocol.as_deref(), Some("chat"));
    assert_eq!(cookie.as_deref(), Some("probe=1"));
    assert_eq!(next_text(&mut ws.unwrap()).await, "upgraded");

    // A pick the client did not offer is refused; the request stays the
    // handler's to answer (here: 409).
    let (status, ..) = handshake(&server, "/probe?protocol=stomp", "mqtt, chat", None).await;
    assert_eq!(status, 409);
    let refused = server
        .raw(b"GET /probe?protocol=stomp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
        .await;
    assert!(refused.starts_with("HTTP/1.1 409"), "{refused}");
    assert!(refused.contains("was not offered"), "{refused}");
}

#[tokio::test]
async fn allowed_origin_stops_cross_site_handshakes_with_403() {
    let server = Server::start_flagged(
        &["--allowed-origin", "https://app.example"],
        &[("/websocket", "echo"), ("/", "page")],
    );
    let (status, ..) = handshake(&server, "/websocket", "", Some("https://evil.example")).await;
    assert_eq!(status, 403);
    let (status, ..) = handshake(&server, "/websocket", "", Some("https://app.example")).await;
    assert_eq!(status, 101);
    // Not a browser: no Origin, nothing to hijack.
    let (status, ..) = handshake(&server, "/websocket", "", None).await;
    assert_eq!(status, 101);
    // Pages are served to any origin: only the handshake is checked.
    let page = server
        .raw(b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n")
        .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    server.wait_for_log("origin not allowed").await;
}

#[test]
fn a_bad_allowed_origin_is_refused_at_start() {
    let out = wshost()
        .args(["serve", "--allowed-origin", "app.example/path"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("allowed_origins (--allowed-origin): \"app.example/path\" is not an origin"),
        "{stderr}"
    );
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

fn handshake_request(first_line: &str, extra: &str) -> String {
    format!(
        "{first_line}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn handshakes_are_checked_strictly() {
    let server = Server::start(&[("/websocket", "echo")]);
    let get = "GET /websocket HTTP/1.1";
    let cases = [
        (
            handshake_request("GET /websocket HTTP/1.0", KEY),
            "HTTP/1.1",
        ),
        (
            handshake_request(get, KEY).replace("Host: x\r\n", ""),
            "Host",
        ),
        (
            handshake_request(get, "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n"),
            "16 bytes",
        ),
        (
            handshake_request(get, "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n"),
            "16 bytes",
        ),
        (
            handshake_request(get, &format!("{KEY}{KEY}")),
            "sec-websocket-key is sent more than once",
        ),
        (
            handshake_request(get, &format!("{KEY}Sec-WebSocket-Version: 13\r\n")),
            "sec-websocket-version is sent more than once",
        ),
    ];
    for (request, why) in cases {
        let response = server.raw(request.as_bytes()).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{request:?}: {response}"
        );
        assert!(response.contains(why), "{request:?}: {response}");
    }
    // The valid one still upgrades.
    let ok = server.raw_upgrade(&handshake_request(get, KEY)).await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
}

#[tokio::test]
async fn head_answers_carry_no_body() {
    let server = Server::start(&[("/", "page")]);
    let response = server
        .raw(b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    assert!(response.contains("content-length: "), "{response}");
    assert!(
        response.ends_with("\r\n\r\n"),
        "a body followed: {response}"
    );
}

#[tokio::test]
async fn an_error_answer_reaches_a_client_that_sent_more() {
    let server = Server::start(&[("/", "page")]);
    for _ in 0..5 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        // A request with a body the host never reads: closing with it unread
        // would reset the connection and could destroy the 404 in flight.
        let body = vec![b'x'; 256 << 10];
        let head = format!(
            "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        // Let the answer arrive and the server close before the body is sent.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tcp.write_all(&body).await;
        let mut response = Vec::new();
        let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut response)).await;
        assert!(matches!(read, Ok(Ok(_))), "read: {read:?}");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    }
}

#[tokio::test]
async fn fragmented_text_pushes_are_checked_for_utf8() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?bad-fragments").await;
    // The broken fragment never went out: the message is `okλ`, valid.
    assert_eq!(next_text(&mut ws).await, "okλ");
    let refusal = next_text(&mut ws).await;
    assert!(
        refusal.contains("Protocol(\"text is not valid UTF-8\")"),
        "{refusal}"
    );
}

#[tokio::test]
async fn guest_output_cannot_forge_log_lines_or_flood_the_log() {
    let server = Server::start(&[("/probe", "probe")]);
    let response = server.get("/probe?log=2000").await;
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    server.wait_for_log("lines of guest output dropped").await;
    let log = server.log();
    assert!(
        log.contains("forging\\u{d}INFO wshost: a line the host never wrote"),
        "{log}"
    );
    assert!(!log.contains("forging\r"), "a raw CR reached the log");
    let logged = log.matches("line ").count();
    assert!(
        (150..=400).contains(&logged),
        "{logged} of 2,000 lines logged; the burst is 200"
    );
}

#[tokio::test]
async fn the_open_files_limit_is_raised_at_start() {
    // A shell lowers the soft limit, then execs wshost.
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        "ulimit -Sn 256 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_wshost"),
    ]);
    let server = Server::start_command(shell, &route_args(&[("/websocket", "echo")]));
    let _ws = healthy_echo(&server, "/websocket").await;
    let log = server.log();
    assert!(log.contains("open files limit raised from 256 to"), "{log}");
}

#[test]
fn check_compiles_in_a_private_directory() {
    // The old check used `$TMPDIR/wshost-check-<pid>`: plant files at every
    // name the next pids would get; a predictable path would fail on them.
    let tmp = tempdir("check-tmp");
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    for pid in last..last + 2000 {
        std::fs::write(tmp.join(format!("wshost-check-{pid}")), b"planted").unwrap();
    }
    let stdout = stdout_of_success(wshost().arg("check").arg(guest("echo")).env("TMPDIR", &tmp));
    assert!(stdout.contains("a wshost handler"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "check left {left:?} behind");
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Reads frames until the server drops TCP; the pings seen and how long it took.
async fn pings_until_dropped(raw: &mut support::raw::RawWs) -> (usize, Duration) {
    let started = std::time::Instant::now();
    let mut pings = 0;
    while let Some(frame) = raw.recv().await {
        if frame.opcode == support::raw::PING {
            pings += 1;
        }
    }
    (pings, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_without_an_idle_timeout_keeps_pinging_a_peer_that_answers() {
    // It pinged once in a socket's life: after the ping, the alarm was set
    // for the idle deadline, and there was none.
    let server = Server::start_flagged(
        &["--ping-interval", "0.2", "--idle-timeout", "0"],
        &[("/echo", "echo"), ("/events", "event_mirror")],
    );
    for path in ["/echo", "/events"] {
        let mut live = server.connect(path).await;
        let mut pings = 0;
        // Three pings come in about 0.7 s; the wait is generous for a
        // loaded machine (without the fix a second never comes).
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        while pings < 3
            && let Ok(Some(Ok(msg))) =
                tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut live)).await
        {
            pings += usize::from(msg.is_ping());
        }
        assert!(
            pings >= 3,
            "{path}: {pings} pings in 10 s at a 0.2 s interval"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_quiet_sockets_and_drops_silent_ones_in_both_worlds() {
    let server = Server::start_flagged(
        &[
            "--ping-interval",
            "0.2",
            "--idle-timeout",
            "0.8",
            "--max-connections",
            "2",
        ],
        &[("/echo", "echo"), ("/events", "event_mirror")],
    );
    for path in ["/echo", "/events"] {
        // A live client answers the pings (tungstenite does as it reads):
        // it outlives the idle timeout twice over.
        let mut live = server.connect(path).await;
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(1800);
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout_at(until, futures_util::StreamExt::next(&mut live)).await
        {
            pings += usize::from(msg.is_ping());
        }
        assert!(
            pings >= 3,
            "{path}: {pings} pings in 1.8 s at a 0.2 s interval"
        );
        send_text(&mut live, "alive").await;
        assert!(next_text(&mut live).await.contains("alive"), "{path}");

        // A half-open peer (reads, never answers) is dropped within the
        // idle timeout, and its slot is free again.
        let mut silent = support::raw::RawWs::connect(&server, path).await;
        let (pings, took) = pings_until_dropped(&mut silent).await;
        assert!(pings >= 1, "{path}: the silent peer was never pinged");
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{path}: dropped after {took:?} with --idle-timeout 0.8"
        );
        let mut next = server.connect(path).await;
        send_text(&mut next, "slot free").await;
        assert!(next_text(&mut next).await.contains("slot free"), "{path}");
    }
    server.wait_for_log("nothing heard for").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_connection_after_the_write_timeout() {
    let server = Server::start_flagged(
        &["--write-timeout", "0.5"],
        &[("/echo", "echo"), ("/flood", "flood")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    let started = std::time::Instant::now();
    let _stuck = non_reader(&server, "/flood").await;
    // The flood guest's push fails once its socket is dropped.
    server.wait_for_log("flood ended after").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "dropped after {took:?}");
    assert!(
        server.log().contains("took no byte for"),
        "{}",
        server.log()
    );
    assert_still_answers(&mut echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_topic_messages_are_served_while_the_guest_computes() {
    let server = Server::start_flagged(&["--guest-cpu-timeout", "5"], &[("/probe", "probe")]);
    let mut busy = server.connect("/probe?busy=news").await;
    let mut publisher = server.connect("/probe?topic=news").await;
    send_text(&mut busy, "go").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The guest computes for 1 s: its socket is still served.
    futures_util::SinkExt::send(&mut busy, Message::Ping(b"there?".to_vec().into()))
        .await
        .unwrap();
    send_text(&mut publisher, "pub while you compute").await;
    // Both before `done`, in either order: on the loop the guest computes
    // on, the socket's readiness is seen every 61 of its yields, by which
    // time the topic's message may be queued ahead of the pong.
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(next(&mut busy).await.unwrap().unwrap());
    }
    assert!(
        got.contains(&Message::Pong(b"there?".to_vec().into())),
        "{got:?}"
    );
    assert!(got.contains(&Message::text("while you compute")), "{got:?}");
    assert_eq!(next_text(&mut busy).await, "done");
}

#[tokio::test]
async fn a_zero_timeout_recv_returns_what_has_arrived() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?poll").await;
    assert_eq!(next_text(&mut ws).await, "ready");
    send_text(&mut ws, "x").await;
    assert_eq!(next_text(&mut ws).await, "frame x");
}

#[tokio::test]
async fn what_a_handler_queued_goes_out_before_its_close() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?broadcast-return").await;
    assert_eq!(next_text(&mut ws).await, "bye all");
    assert_eq!(close_code(&mut ws).await, Some(1000));
}

#[tokio::test]
async fn no_topic_message_lands_between_a_guests_fragments() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?slow-fragments=t").await;
    let mut publisher = server.connect("/probe?topic=t").await;
    assert_eq!(next_text(&mut ws).await, "ready");
    // Published while the guest is between its fragments: its next part
    // waits for our `go`, sent once the publish has been queued (the
    // publisher's `id` is answered after it).
    send_text(&mut publisher, "pub intruder").await;
    published(&mut publisher).await;
    send_text(&mut ws, "go").await;
    assert_eq!(next_text(&mut ws).await, "Hello");
    assert_eq!(next_text(&mut ws).await, "intruder");
}

/// Other parties' frames held while a guest's fragmented message is under
/// way do not back up the guest's own next part: counted, past the 64 KiB
/// backpressure limit, they had the guest wait for room only its last part
/// could make.
#[tokio::test]
async fn frames_held_between_fragments_do_not_stall_the_next_fragment() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut ws = server.connect("/probe?slow-fragments=t").await;
    let mut publisher = server.connect("/probe?topic=t").await;
    assert_eq!(next_text(&mut ws).await, "ready");
    let big = "x".repeat(40 << 10);
    for _ in 0..2 {
        send_text(&mut publisher, &format!("pub {big}")).await;
    }
    // Both held (80 KiB, past the 64 KiB limit) before the next part.
    published(&mut publisher).await;
    send_text(&mut ws, "go").await;
    assert_eq!(next_text(&mut ws).await, "Hello");
    assert_eq!(next_text(&mut ws).await.len(), big.len());
    assert_eq!(next_text(&mut ws).await.len(), big.len());
}

/// Once a `/probe?topic=` publisher answers `id` (after its own copies of
/// what it published, `pub` reaching it too), its publishes are queued.
async fn published(publisher: &mut Client) {
    send_text(publisher, "id").await;
    while next_text(publisher).await.parse::<u64>().is_err() {}
}

#[tokio::test]
async fn host_calls_do_not_restart_the_cpu_budget() {
    let server = Server::start_flagged(&["--guest-cpu-timeout", "0.3"], &[("/probe", "probe")]);
    let mut ws = server.connect("/probe?spin-calls").await;
    let started = std::time::Instant::now();
    assert_eq!(close_code(&mut ws).await, Some(1011));
    assert!(started.elapsed() < Duration::from_secs(5));
    server.wait_for_log("ran for over").await;
}
