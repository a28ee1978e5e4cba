//! The seed's second example: every message reaches every connection of the
//! route; the same tests for the guest in every language, in both worlds:
//! `broadcast` (a handler per connection, the hub) and `chat` (one event
//! instance, a topic), and as coroutines (`coro_broadcast`: the hub, tasks
//! of one instance).

mod support;

use std::time::Duration;
use support::admin::{admin_addr, wait_for_sample};
use support::*;

in_every_language!(
    a_message_reaches_all_three_clients,
    a_client_that_leaves_is_no_longer_pushed_to,
    the_text_close_drops_tcp_in_both_worlds,
);

async fn a_message_reaches_all_three_clients(lang: Lang) {
    for &name in lang.broadcasts() {
        reaches_all_three_clients(lang, name).await;
    }
}

async fn reaches_all_three_clients(lang: Lang, name: &str) {
    let server = Server::start_in(lang, "/websocket", name);
    let mut a = server.connect("/websocket").await;
    let mut b = server.connect("/websocket").await;
    let mut c = server.connect("/websocket").await;
    send_text(&mut a, "x").await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(next_text(ws).await, "Сервер：x");
    }
}

async fn a_client_that_leaves_is_no_longer_pushed_to(lang: Lang) {
    for &name in lang.broadcasts() {
        leaver_is_no_longer_pushed_to(lang, name).await;
    }
}

async fn leaver_is_no_longer_pushed_to(lang: Lang, name: &str) {
    let server = Server::start_in(lang, "/websocket", name);
    let mut a = server.connect("/websocket").await;
    let mut b = server.connect("/websocket").await;
    let mut c = server.connect("/websocket").await;
    send_text(&mut c, "from c").await;
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(next_text(ws).await, "Сервер：from c");
    }
    drop(c); // TCP closed without a Close frame
    server.wait_for_log("connection 3 ended").await;
    for (sender, word) in [(0, "y"), (1, "z")] {
        let ws = if sender == 0 { &mut a } else { &mut b };
        send_text(ws, word).await;
        assert_eq!(next_text(&mut a).await, format!("Сервер：{word}"));
        assert_eq!(next_text(&mut b).await, format!("Сервер：{word}"));
    }
    // A push to a departed member would have been refused and logged.
    assert!(!server.log().contains("errorCode"), "{}", server.log());
}

async fn the_text_close_drops_tcp_in_both_worlds(lang: Lang) {
    for &name in lang.broadcasts() {
        let server = Server::start_in(lang, "/websocket", name);
        let mut a = server.connect("/websocket").await;
        let mut b = server.connect("/websocket").await;
        send_text(&mut a, "close").await;
        // The seed's close(): TCP goes away, no Close frame.
        assert_eq!(close_code(&mut a).await, None, "{name}");
        send_text(&mut b, "after").await;
        assert_eq!(next_text(&mut b).await, "Сервер：after", "{name}");
    }
}

/// `--loops 3`: six clients connecting one after another land two on each
/// loop (the fewest open first, counted for as long as each is open; an
/// event route's then move to its instance's loop, 0), and a message from
/// one reaches all six in every world: the handler world's hub, the event
/// world's one instance and the coro instances of three loops.
#[tokio::test]
async fn a_message_crosses_every_event_loop_in_every_world() {
    for (lang, name) in [
        (Lang::Rust, "broadcast"),
        (Lang::Rust, "chat"),
        (Lang::RustCoro, "broadcast"),
    ] {
        let route = format!("/websocket={}", lang.guest(name).display());
        let flags = ["--loops=3", "--admin=127.0.0.1:0", "--route"].map(String::from);
        let server = Server::start_with(&[&flags[..], &[route]].concat());
        server.wait_for_log("3 event loops").await;
        let admin = admin_addr(&server).await;
        let mut clients = Vec::new();
        for _ in 0..6 {
            let mut ws = server.connect("/websocket").await;
            // Each one upgraded and answering before the next comes.
            send_text(&mut ws, "here").await;
            for ws in clients.iter_mut().chain([&mut ws]) {
                assert_eq!(next_text(ws).await, "Сервер：here", "{name}");
            }
            clients.push(ws);
        }
        // An event route's plain sockets move to its instance's loop, 0.
        let on_loops = match name {
            "chat" => [6.0, 0.0, 0.0],
            _ => [2.0, 2.0, 2.0],
        };
        for (i, open) in on_loops.into_iter().enumerate() {
            let series = format!("wshost_loop_connections{{loop=\"{i}\"}}");
            wait_for_sample(&admin, &series, open).await;
        }
        for (i, word) in [(0, "a"), (4, "b")] {
            send_text(&mut clients[i], word).await;
            for ws in &mut clients {
                assert_eq!(next_text(ws).await, format!("Сервер：{word}"), "{name}");
            }
        }
    }
}

/// A coro task's publish to more than 1,024 subscribers has their writers
/// woken in slices over a few turns of the loop (`ROUND_PAST` in
/// `ws::outbox`), publishes waiting for the round before: every
/// subscriber still gets every message, once and in order, the
/// publisher's own included. (A writer a round failed to wake times out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coro_publish_to_over_a_thousand_reaches_each_in_order() {
    reaches_over_a_thousand_in_order("coro_chat").await;
}

/// The same for a handler guest's hub broadcast, each publish a round of
/// its own (`Fanout` in `ws::outbox`), an instance per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_broadcast_to_over_a_thousand_reaches_each_in_order() {
    reaches_over_a_thousand_in_order("broadcast").await;
}

/// The same for a coro task's hub broadcast, corked as its publishes are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coro_hub_broadcast_to_over_a_thousand_reaches_each_in_order() {
    reaches_over_a_thousand_in_order("coro_broadcast").await;
}

/// 30 messages from one client of `guest` (which pushes each, prefixed,
/// to every client) reach 1,100 others and itself, once and in order.
async fn reaches_over_a_thousand_in_order(guest: &str) {
    const SUBSCRIBERS: usize = 1_100;
    const MESSAGES: usize = 30;
    raise_fd_limit();
    let server = Server::start(&[("/chat", guest)]);
    let url = server.url("/chat");
    let connects: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let (ws, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .expect("connect");
                ws
            })
        })
        .collect();
    let mut subscribers = Vec::new();
    for connect in connects {
        subscribers.push(connect.await.expect("connect task"));
    }
    // Each client subscribes (joins) right after its upgrade: the
    // publisher, last, hears its own message once it has, and the others
    // had long before.
    let mut publisher = server.connect("/chat").await;
    send_text(&mut publisher, "ready").await;
    assert_eq!(next_text(&mut publisher).await, "Сервер：ready");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let readers: Vec<_> = subscribers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                // "ready" too, unless it came before the subscription.
                let mut got = Vec::with_capacity(MESSAGES);
                while got.len() < MESSAGES {
                    let text = next_text(&mut ws).await;
                    if !(got.is_empty() && text == "Сервер：ready") {
                        got.push(text);
                    }
                }
                got
            })
        })
        .collect();
    for i in 0..MESSAGES {
        send_text(&mut publisher, &format!("m{i}")).await;
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("Сервер：m{i}")).collect();
    for reader in readers {
        assert_eq!(reader.await.expect("reader"), expected);
    }
    for want in &expected {
        assert_eq!(&next_text(&mut publisher).await, want);
    }
}
