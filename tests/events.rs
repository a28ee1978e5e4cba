//! The event world over real sockets: one instance per route, the request
//! hook, attachments, topics shared with the handler world, closes, traps,
//! backpressure, and 1,000 sockets on one instance.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Send a command to the `event-probe` guest; its text answer.
async fn ask(ws: &mut Client, command: &str) -> String {
    send_text(ws, command).await;
    next_text(ws).await
}

/// A connection subscribed to `closes`, where the probe reports every `on-close`.
async fn close_watcher(server: &Server) -> Client {
    let mut watcher = server.connect("/probe").await;
    assert_eq!(ask(&mut watcher, "sub closes").await, "Ok(true)");
    watcher
}

#[tokio::test]
async fn the_request_hook_answers_pages_refuses_and_upgrades() {
    let server = Server::start(&[("/probe", "event_probe")]);
    let page = server.get("/probe?respond").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with("page from the event guest\n"), "{page}");
    let refused = server.get("/probe?refuse").await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // Upgrading a request that is no handshake: the host answers 400.
    let plain = server.get("/probe").await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    let crashed = server.get("/probe?trap").await;
    assert!(crashed.starts_with("HTTP/1.1 500"), "{crashed}");
    // The route's next request gets a fresh instance.
    let mut ws = server.connect("/probe").await;
    assert_eq!(ask(&mut ws, "whoami").await, "-");
}

#[tokio::test]
async fn a_subprotocol_the_client_offered_is_picked_and_headers_added() {
    let server = Server::start(&[("/probe", "event_probe")]);
    let mut request = server
        .url("/probe?protocol=chat")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-ws, chat".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    assert_eq!(response.headers()["x-probe"], "yes");
    assert_eq!(ask(&mut ws, "whoami").await, "-");
    // A pick the client did not offer is the guest's mistake: 500.
    let refused = server
        .raw(&handshake(
            &server,
            "/probe?protocol=mqtt",
            "sec-websocket-protocol: chat\r\n",
        ))
        .await;
    assert!(refused.starts_with("HTTP/1.1 500"), "{refused}");
    assert!(refused.contains("not offered"), "{refused}");
}

fn handshake(server: &Server, path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n",
        server.addr
    )
    .into_bytes()
}

#[tokio::test]
async fn attachments_are_kept_by_the_host() {
    let server = Server::start(&[("/probe", "event_probe")]);
    let mut ann = server.connect("/probe?name=ann").await;
    let mut bob = server.connect("/probe").await;
    assert_eq!(ask(&mut ann, "whoami").await, "ann");
    assert_eq!(ask(&mut bob, "whoami").await, "-");
    assert_eq!(ask(&mut bob, "set bob").await, "Ok(())");
    assert_eq!(ask(&mut bob, "whoami").await, "bob");
    // At most 16 KiB: the limit itself is kept, a byte past it refused and
    // the attachment left as it was.
    let most = "x".repeat(16 << 10);
    assert_eq!(ask(&mut bob, &format!("set {most}")).await, "Ok(())");
    assert_eq!(ask(&mut bob, "whoami").await, most);
    let past = format!("set {most}y");
    assert_eq!(ask(&mut bob, &past).await, "Err(Error::TooLarge)");
    assert_eq!(ask(&mut bob, "whoami").await, most);
    assert_eq!(ask(&mut ann, "open").await, "2");
}

#[tokio::test]
async fn publish_reaches_subscribers_with_and_without_exclusion() {
    let server = Server::start(&[("/probe", "event_probe")]);
    let mut a = server.connect("/probe").await;
    let mut b = server.connect("/probe").await;
    let mut outsider = server.connect("/probe").await;
    assert_eq!(ask(&mut a, "sub room").await, "Ok(true)");
    assert_eq!(ask(&mut a, "sub room").await, "Ok(false)");
    assert_eq!(ask(&mut b, "sub room").await, "Ok(true)");
    assert_eq!(ask(&mut outsider, "count room").await, "2");
    // To everyone (the publisher included, after its own message)...
    send_text(&mut a, "pub room hi").await;
    assert_eq!(next_text(&mut a).await, "hi");
    assert_eq!(next_text(&mut a).await, "published Ok(2)");
    assert_eq!(next_text(&mut b).await, "hi");
    // ...or to everyone but the publisher.
    assert_eq!(ask(&mut a, "pubx room bye").await, "published Ok(1)");
    assert_eq!(next_text(&mut b).await, "bye");
    // A non-subscriber may publish; an unsubscribed socket gets nothing more.
    assert_eq!(ask(&mut b, "unsub room").await, "Ok(true)");
    assert_eq!(ask(&mut outsider, "pub room last").await, "published Ok(1)");
    assert_eq!(next_text(&mut a).await, "last");
    assert_eq!(ask(&mut b, "count room").await, "1");
    assert_eq!(
        ask(&mut a, &format!("sub {}", "t".repeat(300))).await,
        "Err(Error::Protocol(\"topic names are 1 to 256 bytes, not 300\"))"
    );
}

#[tokio::test]
async fn a_handler_world_guest_and_an_event_guest_share_a_topic() {
    let server = Server::start(&[("/probe", "event_probe"), ("/straight", "probe")]);
    let mut event = server.connect("/probe").await;
    assert_eq!(ask(&mut event, "sub news").await, "Ok(true)");
    let mut straight = server.connect("/straight?topic=news").await;
    send_text(&mut straight, "count").await;
    assert_eq!(next_text(&mut straight).await, "2");
    // The handler world publishes; both get it.
    send_text(&mut straight, "pub from the handler").await;
    assert_eq!(next_text(&mut straight).await, "from the handler");
    assert_eq!(next_text(&mut event).await, "from the handler");
    // Excluding itself, the handler reaches only the event socket.
    send_text(&mut straight, "pubx only for you").await;
    assert_eq!(next_text(&mut event).await, "only for you");
    // The event world publishes; the handler-world connection gets it.
    assert_eq!(
        ask(&mut event, "pubx news from events").await,
        "published Ok(1)"
    );
    assert_eq!(next_text(&mut straight).await, "from events");
    // The handler unsubscribes, and subscribes again.
    send_text(&mut straight, "unsub").await;
    wait_for_subscribers(&mut event, "news", "1").await;
    drop(straight);
    let mut again = server.connect("/straight?topic=news").await;
    send_text(&mut again, "count").await;
    assert_eq!(next_text(&mut again).await, "2");
    // A handler's subscription ends with its connection.
    drop(again);
    wait_for_subscribers(&mut event, "news", "1").await;
}

/// Ask the probe behind `ws` for `topic`'s subscriber count until it is `count`.
async fn wait_for_subscribers(ws: &mut Client, topic: &str, count: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = ask(ws, &format!("count {topic}")).await;
        if now == count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic} has {now} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn on_close_runs_once_for_every_way_a_socket_ends() {
    let mut server = Server::start_flagged(&["--hub-queue", "4"], &[("/probe", "event_probe")]);
    let mut watcher = close_watcher(&server).await;

    // The peer's Close frame: its code and reason.
    let mut polite = server.connect("/probe").await;
    let id = ask(&mut polite, "open").await;
    assert_eq!(id, "2");
    polite
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    assert_eq!(close_code(&mut polite).await, Some(4001));
    assert_eq!(next_text(&mut watcher).await, "closed 2 4001 bye");

    // The peer vanishes: 1006.
    let vanishing = server.connect("/probe").await;
    drop(vanishing);
    assert_eq!(next_text(&mut watcher).await, "closed 3 1006 ");

    // The guest closes: its code, after what it queued.
    let mut closed = server.connect("/probe").await;
    send_text(&mut closed, "close 4002 done").await;
    assert_eq!(close_frame(&mut closed).await, Some((4002, "done".into())));
    assert_eq!(next_text(&mut watcher).await, "closed 4 4002 done");

    // The guest terminates: TCP dropped, no Close frame, 1006.
    let mut terminated = server.connect("/probe").await;
    send_text(&mut terminated, "terminate").await;
    assert_eq!(close_code(&mut terminated).await, None);
    assert_eq!(next_text(&mut watcher).await, "closed 5 1006 ");

    // A socket that does not read is evicted when its queue overflows: 1008.
    let mut evicted = non_reader(&server, "/probe").await;
    send_text(&mut evicted, "flood 100").await;
    assert_eq!(
        next_text(&mut watcher).await,
        "closed 6 1008 too slow: queued messages were not taken"
    );
    server.wait_for_log("flood: Error::QueueFull").await;
    drop(evicted);

    // Shutdown: 1001 to every peer, on-close for each before the server exits.
    let mut last = server.connect("/probe").await;
    assert_eq!(ask(&mut last, "whoami").await, "-");
    server.signal("TERM");
    for ws in [&mut watcher, &mut last] {
        assert_eq!(close_code(ws).await, Some(1001));
    }
    assert!(server.wait_exit(WAIT).success());
    for id in [1, 7] {
        let report = format!("closed {id} 1001 server shutting down");
        assert!(server.log().contains(&report), "{}", server.log());
    }
}

#[tokio::test]
async fn a_trap_loses_the_instance_not_the_other_sockets() {
    let server = Server::start(&[("/probe", "event_probe"), ("/chat", "chat")]);
    let mut chat = server.connect("/chat").await;
    let mut watcher = close_watcher(&server).await;
    let mut ann = server.connect("/probe?name=ann").await;
    assert_eq!(ask(&mut ann, "sub room").await, "Ok(true)");
    let mut crasher = server.connect("/probe").await;
    send_text(&mut crasher, "panic").await;
    // The socket whose event trapped is closed with 1011...
    let (code, reason) = close_frame(&mut crasher).await.unwrap();
    assert_eq!(code, 1011);
    assert!(reason.contains("trapped"), "{reason}");
    // ...its on-close runs on the fresh instance...
    assert_eq!(
        next_text(&mut watcher).await,
        format!("closed 4 1011 {reason}")
    );
    // ...and the other sockets carry on, attachments and topics intact.
    assert_eq!(ask(&mut ann, "whoami").await, "ann");
    assert_eq!(ask(&mut ann, "count room").await, "1");
    // A route's crash never touches another route.
    send_text(&mut chat, "still here").await;
    assert_eq!(next_text(&mut chat).await, "Сервер：still here");
    server.wait_for_log("event crashing on purpose").await;
}

#[tokio::test]
async fn an_event_past_its_cpu_budget_is_stopped() {
    let server = Server::start_flagged(
        &["--guest-cpu-timeout", "0.2"],
        &[("/probe", "event_probe")],
    );
    let mut other = server.connect("/probe?name=other").await;
    let mut spinner = server.connect("/probe").await;
    send_text(&mut spinner, "spin").await;
    let (code, reason) = close_frame(&mut spinner).await.unwrap();
    assert_eq!(code, 1011);
    assert!(reason.contains("ran for over"), "{reason}");
    assert_eq!(ask(&mut other, "whoami").await, "other");
}

#[tokio::test]
async fn memory_past_the_cap_ends_the_instance_not_the_route() {
    let cap = (16 << 20).to_string();
    let server = Server::start_flagged(&["--guest-memory", &cap], &[("/probe", "event_probe")]);
    let mut other = server.connect("/probe?name=other").await;
    let mut bomber = server.connect("/probe").await;
    send_text(&mut bomber, "bomb").await;
    let (code, reason) = close_frame(&mut bomber).await.unwrap();
    assert_eq!(code, 1011);
    assert!(reason.contains("memory would exceed"), "{reason}");
    assert_eq!(ask(&mut other, "whoami").await, "other");
}

#[tokio::test]
async fn a_backed_up_socket_drains_and_says_so() {
    let server = Server::start_flagged(
        &["--backpressure-limit", "100000"],
        &[("/probe", "event_probe")],
    );
    let mut ws = server.connect("/probe").await;
    send_text(&mut ws, "flood 20").await;
    for _ in 0..20 {
        match next(&mut ws).await {
            Some(Ok(Message::Binary(b))) => assert_eq!(b.len(), 64 << 10),
            other => panic!("expected a flood message, got {other:?}"),
        }
    }
    // 20 x 64 KiB queued at once go past 100,000 bytes: sends say so...
    let report = next_text(&mut ws).await;
    let backed_up: u32 = report
        .strip_prefix("flooded, ")
        .and_then(|r| r.strip_suffix(" backed up"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(backed_up >= 1, "{report}");
    // ...and once all is written, on-drain runs (again, if the queue
    // emptied and backed up again while the guest was still sending).
    assert_eq!(next_text(&mut ws).await, "drained");
    // Nothing stays queued once the client has read everything (a reply
    // may still be on its way when the next command is handled).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        send_text(&mut ws, "buffered").await;
        let mut answer = next_text(&mut ws).await;
        while answer == "drained" {
            answer = next_text(&mut ws).await;
        }
        if answer == "0" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still buffered: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sockets_on_one_instance_are_all_answered() {
    raise_fd_limit();
    let server = Server::start(&[("/mirror", "event_mirror")]);
    let url = server.url("/mirror");
    let clients: Vec<_> = (0..1000)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connect");
                ws.send(Message::text(format!("m{i}"))).await.unwrap();
                let back = tokio::time::timeout(WAIT, ws.next())
                    .await
                    .expect("answer in time");
                assert_eq!(back.unwrap().unwrap(), Message::text(format!("m{i}")));
                ws
            })
        })
        .collect();
    let mut open = Vec::new();
    for client in clients {
        open.push(client.await.expect("client task"));
    }
    // All 1,000 still open on the one instance: each gets a binary echo.
    for (i, ws) in open.iter_mut().enumerate().step_by(97) {
        ws.send(Message::binary(vec![i as u8; 3])).await.unwrap();
        assert_eq!(
            next(ws).await.unwrap().unwrap(),
            Message::binary(vec![i as u8; 3])
        );
    }
}

/// The review's M9: a socket whose message found its route's queue full
/// waited for room inside its read, writing nothing meanwhile (nor pinging,
/// nor closing). Here the instance naps 3 s with 5,000 messages sent after
/// it (more than the queue's 4,096): a topic message published meanwhile
/// still reaches the socket at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_waiting_for_room_in_its_routes_queue_still_writes() {
    let server = Server::start(&[("/probe", "event_probe"), ("/straight", "probe")]);
    let mut event = server.connect("/probe").await;
    assert_eq!(ask(&mut event, "sub news").await, "Ok(true)");
    let (mut sink, mut stream) = event.split();
    sink.send(Message::text("nap 3000")).await.unwrap();
    let sender = tokio::spawn(async move {
        for _ in 0..5_000 {
            if sink.send(Message::text("id")).await.is_err() {
                break;
            }
        }
        sink
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut straight = server.connect("/straight?topic=news").await;
    let published = std::time::Instant::now();
    send_text(&mut straight, "pub hello").await;
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a message within the wait");
    let took = published.elapsed();
    assert!(
        matches!(&first, Some(Ok(Message::Text(t))) if t.as_str() == "hello"),
        "{first:?}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "the topic message waited {took:?} for the napping instance"
    );
    drop(sender);
}

/// A socket whose connection has ended takes no more sends, though its
/// `on-close` has not run yet (the instance was busy): `send` says the
/// peer has closed, where it said queued, for bytes no one would write.
#[tokio::test]
async fn a_send_to_a_socket_that_ended_is_refused_before_its_on_close() {
    let server = Server::start(&[("/probe", "event_probe")]);
    let mut gone = server.connect("/probe").await;
    send_text(&mut gone, "id").await;
    let gone_id = next_text(&mut gone).await;
    let mut other = server.connect("/probe").await;
    // Long enough for the first socket to end meanwhile on a busy machine.
    send_text(&mut other, "nap 2000").await;
    send_text(&mut other, &format!("send {gone_id} hello")).await;
    // Both queued to the route before the first socket ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    gone.close(None).await.unwrap();
    while next(&mut gone).await.is_some() {}
    assert_eq!(next_text(&mut other).await, "napped");
    let sent = next_text(&mut other).await;
    assert!(sent.contains("PeerClosed"), "{sent}");
}
