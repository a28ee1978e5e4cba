//! `--cluster`: three wshost processes on one real `redis-server` (started
//! by each test on a free port): topics across processes in all three
//! worlds, sends by id in the handler and event worlds, and Redis going
//! away and coming back mid-test.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::admin::{admin_addr, admin_get, sample};
use support::redis::Redis;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// A wshost process of the cluster, serving `chat` (event world) at
/// /chat, `probe` (handler world) at /probe and `event_probe` at /events.
fn node(redis: &Redis) -> Server {
    Server::start_flagged(
        &["--cluster", &redis.url()],
        &[
            ("/chat", "chat"),
            ("/probe", "probe"),
            ("/events", "event_probe"),
            ("/coro", "coro_chat"),
        ],
    )
}

/// Read until `count` texts came; fails on a wait past [`WAIT`].
async fn texts(ws: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        got.push(next_text(ws).await);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_topics_in_all_three_worlds() {
    const EACH: usize = 50;
    let redis = Redis::start();
    let nodes = [node(&redis), node(&redis), node(&redis)];
    // On every process a subscriber of topic `chat` in each world.
    let mut subscribers = Vec::new();
    for server in &nodes {
        subscribers.push(server.connect("/chat").await);
        subscribers.push(server.connect("/probe?topic=chat").await);
        subscribers.push(server.connect("/coro").await);
    }
    redis.wait_subscribed("chat", 3).await;

    // Every subscriber publishes EACH messages: 9 publishers on 3 processes.
    for k in 0..EACH {
        for (i, ws) in subscribers.iter_mut().enumerate() {
            match i % 3 {
                1 => send_text(ws, &format!("pub h{i}-{k}")).await,
                // chat and coro_chat publish `Сервер：X`.
                _ => send_text(ws, &format!("w{i}-{k}")).await,
            }
        }
    }
    let publishers = subscribers.len();
    let total = EACH * publishers;
    for (i, ws) in subscribers.iter_mut().enumerate() {
        let got = texts(ws, total).await;
        // Exactly once each, and each publisher's messages in its order.
        let mut next: HashMap<String, usize> = HashMap::new();
        for text in &got {
            let text = text.strip_prefix("Сервер：").unwrap_or(text);
            let (publisher, k) = text.split_once('-').expect(text);
            let expected = next.entry(publisher.to_string()).or_default();
            assert_eq!(
                k.parse::<usize>().unwrap(),
                *expected,
                "subscriber {i}: {publisher} out of order or repeated"
            );
            *expected += 1;
        }
        assert_eq!(next.len(), publishers, "subscriber {i}: {next:?}");
        assert!(
            next.values().all(|&n| n == EACH),
            "subscriber {i}: {next:?}"
        );
    }
    // Nothing more: no duplicates arrive late.
    for ws in subscribers.iter_mut() {
        let late = tokio::time::timeout(Duration::from_millis(300), next(ws)).await;
        assert!(late.is_err(), "a message arrived twice: {late:?}");
    }
    // A process whose last subscriber left drops its subscription in Redis.
    subscribers.truncate(6);
    redis.wait_subscribed("chat", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_by_id_reaches_a_connection_on_another_process() {
    let redis = Redis::start();
    let (a, b, c) = (node(&redis), node(&redis), node(&redis));
    let mut handler_a = a.connect("/probe?topic=ids").await;
    let mut events_a = a.connect("/events").await;
    send_text(&mut handler_a, "id").await;
    let handler_id: u64 = next_text(&mut handler_a).await.parse().unwrap();
    send_text(&mut events_a, "id").await;
    let events_id: u64 = next_text(&mut events_a).await.parse().unwrap();
    assert_ne!(handler_id >> 40, 0, "ids carry their node");
    assert_eq!(handler_id >> 40, events_id >> 40, "one node, one prefix");

    // Handler world on b to both on a; event world on c to both on a.
    let mut from_b = b.connect("/probe?topic=ids").await;
    send_text(&mut from_b, &format!("to {handler_id} hello from b")).await;
    send_text(&mut from_b, &format!("to {events_id} hi events from b")).await;
    let mut from_c = c.connect("/events").await;
    send_text(&mut from_c, &format!("send {handler_id} hello from c")).await;
    assert_eq!(next_text(&mut from_c).await, "sent Ok(SendStatus::Queued)");
    send_text(&mut from_c, &format!("send {events_id} hi events from c")).await;
    assert_eq!(next_text(&mut from_c).await, "sent Ok(SendStatus::Queued)");

    let mut got = texts(&mut handler_a, 2).await;
    got.sort();
    assert_eq!(got, ["hello from b", "hello from c"]);
    let mut got = texts(&mut events_a, 2).await;
    got.sort();
    assert_eq!(got, ["hi events from b", "hi events from c"]);

    // An id of this process that is not open is known to be unknown.
    let own_node = from_b_id(&mut from_b).await >> 40;
    let gone = (own_node << 40) | 999_999;
    send_text(&mut from_b, &format!("to {gone} anyone?")).await;
    assert_eq!(
        next_text(&mut from_b).await,
        "error Error::UnknownConnection"
    );
}

async fn from_b_id(ws: &mut Client) -> u64 {
    send_text(ws, "id").await;
    next_text(ws).await.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_stops_nothing_local_and_cross_delivery_resumes() {
    let mut redis = Redis::start();
    // One process from a config file: `cluster = URL` there.
    let dir = tempdir("cluster-config");
    let config = dir.join("wshost.toml");
    std::fs::write(
        &config,
        format!(
            "cluster = \"{}\"\nadmin = \"127.0.0.1:0\"\n\n[[route]]\npath = \"/chat\"\ncomponent = \"{}\"\n",
            redis.url(),
            guest("chat").display()
        ),
    )
    .unwrap();
    let a = Server::start_with(&["--config".into(), config.display().to_string()]);
    let admin = admin_addr(&a).await;
    let metric = async |series: &str| sample(&admin_get(&admin, "/metrics").await.1, series);
    let b = node(&redis);
    let (mut a1, mut a2) = (a.connect("/chat").await, a.connect("/chat").await);
    let mut b1 = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;
    assert_eq!(metric("wshost_cluster_connected").await, 1.0);
    send_text(&mut a1, "before").await;
    for ws in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(next_text(ws).await, "Сервер：before");
    }

    redis.kill();
    a.wait_for_log("subscriptions: Redis unreachable").await;
    b.wait_for_log("subscriptions: Redis unreachable").await;
    send_text(&mut a1, "during").await;
    for ws in [&mut a1, &mut a2] {
        assert_eq!(
            next_text(ws).await,
            "Сервер：during",
            "local delivery goes on"
        );
    }
    let across = tokio::time::timeout(Duration::from_millis(500), next(&mut b1)).await;
    assert!(across.is_err(), "nothing crosses without Redis: {across:?}");
    // The metrics say so: not connected, the publish that could not cross dropped.
    assert_eq!(metric("wshost_cluster_connected").await, 0.0);
    let dropped = r#"wshost_cluster_dropped_total{reason="redis_down"}"#;
    let deadline = Instant::now() + WAIT;
    while metric(dropped).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the dropped publish was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections are served meanwhile.
    let mut b2 = b.connect("/chat").await;
    send_text(&mut b2, "local on b").await;
    assert_eq!(next_text(&mut b1).await, "Сервер：local on b");
    assert_eq!(next_text(&mut b2).await, "Сервер：local on b");

    redis.restart();
    redis.wait_subscribed("chat", 2).await;
    a.wait_for_log("subscriptions: Redis reachable again").await;
    // The publisher reconnects on its next message: retry until one crosses.
    let deadline = Instant::now() + WAIT;
    let crossed = loop {
        send_text(&mut a1, "after").await;
        let got = tokio::time::timeout(Duration::from_millis(300), next(&mut b1)).await;
        if let Ok(Some(Ok(msg))) = got {
            break msg.into_text().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "cross delivery never resumed");
    };
    assert_eq!(crossed, "Сервер：after");
    assert_eq!(metric("wshost_cluster_connected").await, 1.0);
    assert!(metric("wshost_cluster_reconnects_total").await >= 1.0);
    // Both processes still serve.
    for server in [&a, &b] {
        let mut ws = server.connect("/chat").await;
        send_text(&mut ws, "alive").await;
        // (A retried `after` may still be on its way to the newcomer.)
        while next_text(&mut ws).await != "Сервер：alive" {}
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_cluster_url_is_refused_naming_it() {
    let out = wshost()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cluster",
            "http://nope",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cluster http://nope: not a Redis URL"),
        "{err}"
    );
}

/// The Redis URL's password never reaches the log (the review's minor:
/// `--cluster redis://:PASSWORD@host` was logged as given).
#[tokio::test]
async fn the_cluster_password_is_not_logged() {
    // Nothing listens on port 1: the server starts on local delivery and
    // logs the outage, naming the URL.
    let server = Server::start_flagged(
        &["--cluster", "redis://:hunter2-secret@127.0.0.1:1/0"],
        &[("/chat", "chat")],
    );
    server.wait_for_log("unreachable").await;
    server.wait_for_log("cluster: node").await;
    let log = server.log();
    assert!(!log.contains("hunter2"), "{log}");
    assert!(log.contains("redis://***@127.0.0.1:1/0"), "{log}");
}

/// A TCP relay to `to` whose connections can be frozen: they stay open
/// but carry nothing more, as a hung proxy or a partition leaves them (no
/// FIN, no RST). Connections made after a freeze carry bytes again.
struct Relay {
    port: u16,
    /// Connections accepted so far, and the first one not frozen.
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    live_from: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, live_from) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let relay = Relay {
            port,
            accepted: accepted.clone(),
            live_from: live_from.clone(),
        };
        /// Carry bytes one way while connection `mine` is not frozen.
        async fn pump(
            mut from: OwnedReadHalf,
            mut to: OwnedWriteHalf,
            mine: u64,
            live_from: Arc<AtomicU64>,
        ) {
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if mine < live_from.load(Ordering::SeqCst) {
                    // Frozen: hold both sockets open, carry nothing.
                    let _keep = (from, to);
                    std::future::pending::<()>().await;
                    return;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mine = accepted.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::TcpStream::connect(("127.0.0.1", to))
                    .await
                    .unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, mine, live_from.clone()));
                tokio::spawn(pump(sr, cw, mine, live_from.clone()));
            }
        });
        relay
    }

    /// Freeze every connection made so far.
    fn freeze_existing(&self) {
        use std::sync::atomic::Ordering;
        let accepted = self.accepted.load(Ordering::SeqCst);
        self.live_from.store(accepted, Ordering::SeqCst);
    }
}

/// The review's M8: a subscription whose link went silent without FIN or
/// RST was never noticed (delivery from other processes stopped for good,
/// `wshost_cluster_connected` stayed 1). The subscriber now pings Redis:
/// the silence is noticed within ~10 s and the subscription made anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_link_that_goes_silent_is_noticed_and_replaced() {
    let redis = Redis::start();
    let relay = Relay::start(redis.port).await;
    let through_relay = format!("redis://127.0.0.1:{}", relay.port);
    let a = Server::start_flagged(&["--cluster", &through_relay], &[("/chat", "chat")]);
    let b = node(&redis);
    let mut a1 = a.connect("/chat").await;
    let mut b1 = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;
    send_text(&mut b1, "before").await;
    assert_eq!(next_text(&mut a1).await, "Сервер：before");
    assert_eq!(next_text(&mut b1).await, "Сервер：before");

    // Connections made after the freeze carry bytes again: the relay lets
    // a new subscription through, as a healed network would.
    relay.freeze_existing();
    let deadline = Instant::now() + Duration::from_secs(25);
    while !a.log().contains("no answer to PING") {
        assert!(
            Instant::now() < deadline,
            "the silent link was never noticed:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    let crossed = loop {
        send_text(&mut b1, "after").await;
        assert_eq!(next_text(&mut b1).await, "Сервер：after");
        let got = tokio::time::timeout(Duration::from_millis(300), next(&mut a1)).await;
        // (A keepalive ping may come first: only a text counts.)
        if let Ok(Some(Ok(Message::Text(text)))) = got {
            break text.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "delivery never resumed:\n{}",
            a.log()
        );
    };
    assert_eq!(crossed, "Сервер：after");
}

/// A kept topic (`guests/recover-chat`) loses nothing to a silent link:
/// what was published on another process while this one's subscription
/// was dead is read back from the topic's stream in Redis once it is
/// replaced, and its client gets every offset in order, no reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_topic_reads_back_what_a_silent_link_missed() {
    let redis = Redis::start();
    let relay = Relay::start(redis.port).await;
    let through_relay = format!("redis://127.0.0.1:{}", relay.port);
    let chat = [("/chat", "recover_chat")];
    let a = Server::start_flagged(&["--cluster", &through_relay], &chat);
    let b = Server::start_flagged(&["--cluster", &redis.url()], &chat);
    let mut a1 = a.connect("/chat").await;
    let mut b1 = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;
    let json = |text: String| serde_json::from_str::<serde_json::Value>(&text).unwrap();
    send_text(&mut b1, "before").await;
    let before = json(next_text(&mut a1).await);
    let _ = next_text(&mut b1).await;

    relay.freeze_existing();
    for i in 0..20 {
        send_text(&mut b1, &format!("m{i}")).await;
        let _ = next_text(&mut b1).await;
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut got = Vec::new();
    while got.len() < 20 {
        assert!(Instant::now() < deadline, "got {got:?}:\n{}", a.log());
        let wait = Duration::from_millis(500);
        if let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(wait, next(&mut a1)).await {
            got.push(json(text.to_string()));
        }
    }
    let first = before["offset"].as_u64().unwrap();
    for (i, message) in got.iter().enumerate() {
        let want = serde_json::json!({
            "offset": first + 1 + i as u64,
            "epoch": before["epoch"],
            "text": format!("m{i}"),
        });
        assert_eq!(*message, want, "{got:?}");
    }
}

/// The review's M7: what waits for Redis was bounded by count alone (65,536
/// messages of up to 16 MiB) and what comes from it not at all. Both are
/// bounded in bytes now, and a message over 4 MiB does not cross: a few
/// would cost every node its subscription (Redis drops a pub/sub client
/// past 32 MiB of output buffer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_redis_is_bounded_in_bytes_and_huge_messages_stay_local() {
    let redis = Redis::start();
    let relay = Relay::start(redis.port).await;
    let through_relay = format!("redis://127.0.0.1:{}", relay.port);
    let a = Server::start_flagged(
        &["--cluster", &through_relay, "--admin", "127.0.0.1:0"],
        &[("/chat", "chat"), ("/events", "event_probe")],
    );
    let admin = admin_addr(&a).await;
    let metric = async |series: &str| sample(&admin_get(&admin, "/metrics").await.1, series);
    let b = node(&redis);
    let mut a1 = a.connect("/chat").await;
    let mut b1 = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;

    // Over 4 MiB: delivered here, not across.
    let huge = "h".repeat(5 << 20);
    send_text(&mut a1, &huge).await;
    assert_eq!(
        next_text(&mut a1).await.len(),
        "Сервер：".len() + huge.len()
    );
    send_text(&mut a1, "small").await;
    assert_eq!(next_text(&mut a1).await, "Сервер：small");
    assert_eq!(
        next_text(&mut b1).await,
        "Сервер：small",
        "only the small one crossed"
    );
    assert_eq!(
        metric(r#"wshost_cluster_dropped_total{reason="too_large"}"#).await,
        1.0
    );

    // Redis's link stalls: 200 MiB published meanwhile (by an event guest
    // that publishes without subscribing) wait in at most 64 MiB; the rest
    // is dropped and counted.
    relay.freeze_existing();
    drop(a1);
    let events = a.connect("/events").await;
    let (mut sink, mut stream) = futures_util::StreamExt::split(events);
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut stream).await {}
    });
    let command = format!("pub chat {}", "p".repeat(512 << 10));
    for _ in 0..400 {
        let message = Message::text(command.clone());
        futures_util::SinkExt::send(&mut sink, message)
            .await
            .unwrap();
    }
    let full = r#"wshost_cluster_dropped_total{reason="queue_full"}"#;
    let deadline = Instant::now() + WAIT;
    while metric(full).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "nothing was dropped for the bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
}
