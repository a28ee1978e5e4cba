//! Topic history and recovery after reconnects (`wit/history.wit`), driven
//! through `guests/recover-chat` by Python's `websockets` and over raw
//! sockets: what a client missed while away comes back in order and then
//! the live stream, with no gap and no duplicate even while publishes race
//! its reconnects; a position the server cannot honour gets a reset.

mod support;

use std::path::Path;
use support::clients::run_client;
use support::redis::Redis;
use support::*;

const CHAT: (&str, &str) = ("/chat", "recover_chat");

async fn python(server: &Server, scenario: &'static str) -> String {
    python_across(server, server, scenario).await
}

/// `recover.py`'s `scenario` with the client on `home` and the publisher
/// on `other`, the client coming back to `other` (every other time, in the
/// race).
async fn python_across(home: &Server, other: &Server, scenario: &'static str) -> String {
    let url = home.url("/chat");
    let other = other.url("/chat");
    tokio::task::spawn_blocking(move || {
        let env = [
            ("SCENARIO", Path::new(scenario)),
            ("PUBLISH_URL", Path::new(&other)),
            ("BACK_URL", Path::new(&other)),
        ];
        run_client(".venv/bin/python", "recover.py", &url, &env)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_comes_back_gets_what_it_missed_then_live() {
    let server = Server::start(&[CHAT]);
    let out = python(&server, "away").await;
    assert!(out.contains("recovered 50"), "{out}");
    assert!(out.contains("stale epoch: reset"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_racing_publishes_see_every_message_once() {
    let server = Server::start(&[CHAT]);
    let out = python(&server, "race").await;
    assert!(out.contains("no gap, no duplicate"), "{out}");
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// A restart loses a process's history (no `--cluster`): the epoch changes,
/// and a client that names the old one is told to reload.
#[tokio::test]
async fn a_restart_is_a_new_epoch_and_old_positions_get_a_reset() {
    let server = Server::start(&[CHAT]);
    let mut ws = server.connect("/chat").await;
    send_text(&mut ws, "before").await;
    let before = json(&next_text(&mut ws).await);
    assert_eq!(before["offset"], 1, "{before}");
    assert_eq!(before["text"], "before");
    drop(server);

    let server = Server::start(&[CHAT]);
    let (offset, epoch) = (&before["offset"], before["epoch"].as_str().unwrap());
    let mut back = server
        .connect(&format!("/chat?since={offset}&epoch={epoch}"))
        .await;
    let first = json(&next_text(&mut back).await);
    assert_eq!(first["reset"], true, "{first}");
    let new_epoch = first["epoch"].as_str().unwrap();
    assert_ne!(new_epoch, epoch);
    send_text(&mut back, "after").await;
    let after = json(&next_text(&mut back).await);
    assert_eq!(
        (after["offset"].as_u64(), after["epoch"].as_str()),
        (Some(1), Some(new_epoch))
    );
}

/// A position from the future (an offset the stream has not reached, the
/// right epoch) is not taken at its word: a reset, not a silent wait.
#[tokio::test]
async fn a_position_ahead_of_the_stream_gets_a_reset() {
    let server = Server::start(&[CHAT]);
    let mut ws = server.connect("/chat").await;
    send_text(&mut ws, "one").await;
    let one = json(&next_text(&mut ws).await);
    let epoch = one["epoch"].as_str().unwrap();
    let mut ahead = server
        .connect(&format!("/chat?since=99&epoch={epoch}"))
        .await;
    let first = json(&next_text(&mut ahead).await);
    assert_eq!(first, serde_json::json!({"reset": true, "epoch": epoch}));
    // A bad offset is the guest's to refuse: 400.
    let answer = server.get("/chat?since=x&epoch=y").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

/// A recovery is bounded by the socket's queue (`--hub-queue-bytes`): one
/// that does not fit is a reset, not an eviction or a queue past its bound;
/// one that fits is delivered whole even past `--hub-queue`'s count.
#[tokio::test]
async fn a_recovery_larger_than_the_queue_is_a_reset() {
    let flags = ["--hub-queue", "16", "--hub-queue-bytes", "4500"];
    let server = Server::start_flagged(&flags, &[CHAT]);
    let mut publisher = server.connect("/chat").await;
    let mut epoch = String::new();
    for i in 0..40 {
        send_text(&mut publisher, &format!("message {i}")).await;
        epoch = json(&next_text(&mut publisher).await)["epoch"]
            .as_str()
            .unwrap()
            .to_string();
    }
    // 30 missed (about 60 bytes a frame, with 64 more each): fits 4,500
    // bytes, though more than 16 messages.
    let mut back = server
        .connect(&format!("/chat?since=10&epoch={epoch}"))
        .await;
    for offset in 11..=40 {
        assert_eq!(json(&next_text(&mut back).await)["offset"], offset);
    }
    // 40 missed: past the bound, a reset.
    let mut far = server
        .connect(&format!("/chat?since=0&epoch={epoch}"))
        .await;
    let first = json(&next_text(&mut far).await);
    assert_eq!(first["reset"], true, "{first}");
    send_text(&mut publisher, "live").await;
    assert_eq!(json(&next_text(&mut far).await)["offset"], 41);
}

/// Recovery in the handler and coro worlds (`guests/probe`'s `recover`
/// mode, `guests/coro-probe`'s `recover` command) over one server-wide
/// history: what a handler missed while away, published by a coroutine,
/// comes back in order, then where the stream is; a coroutine recovers the
/// same; both then get the live messages.
#[tokio::test]
async fn handler_and_coro_guests_recover_too() {
    let server = Server::start(&[("/probe", "probe"), ("/p", "coro_probe")]);
    let mut handler = server.connect("/probe?recover=news").await;
    assert_eq!(next_text(&mut handler).await, "recovered 0");
    let at = next_text(&mut handler).await;
    let epoch = at.strip_prefix("at 0 ").expect(&at).to_string();
    send_text(&mut handler, "one").await;
    let one = json(&next_text(&mut handler).await);
    assert_eq!(
        (one["offset"].as_u64(), one["text"].as_str()),
        (Some(1), Some("one"))
    );
    drop(handler);

    let mut coro = server.connect("/p").await;
    send_text(&mut coro, "pub news two").await;
    send_text(&mut coro, "pub news three").await;
    send_text(&mut coro, "id").await;
    next_text(&mut coro).await; // in order: both were published

    let mut handler = server
        .connect(&format!("/probe?recover=news&since=1&epoch={epoch}"))
        .await;
    for (offset, text) in [(2, "two"), (3, "three")] {
        let got = json(&next_text(&mut handler).await);
        assert_eq!(
            got,
            serde_json::json!({"offset": offset, "epoch": epoch, "text": text})
        );
    }
    assert_eq!(next_text(&mut handler).await, "recovered 2");
    assert_eq!(next_text(&mut handler).await, format!("at 3 {epoch}"));

    send_text(&mut coro, &format!("recover news 1 {epoch}")).await;
    for offset in [2, 3] {
        assert_eq!(json(&next_text(&mut coro).await)["offset"], offset);
    }
    assert_eq!(next_text(&mut coro).await, "recovered 2");
    send_text(&mut coro, "recover news 1 another-epoch").await;
    let again = next_text(&mut coro).await;
    assert!(
        again.starts_with("error") && again.contains("already subscribed"),
        "{again}"
    );

    send_text(&mut handler, "four").await;
    for ws in [&mut handler, &mut coro] {
        let four = json(&next_text(ws).await);
        assert_eq!(
            (four["offset"].as_u64(), four["text"].as_str()),
            (Some(4), Some("four"))
        );
    }
}

/// `[[history]]` in the config file keeps a topic for a guest that never
/// asks (`guests/chat` only publishes): its messages are numbered and come
/// in the JSON envelope; `wshost check` reads the entries, and a bad one is
/// refused naming the file and the entry.
#[tokio::test]
async fn the_config_file_keeps_topics_for_guests_that_do_not_ask() {
    let dir = tempdir("history-config");
    std::fs::copy(guest("chat"), dir.join("chat.wasm")).unwrap();
    let config = dir.join("wshost.toml");
    let text = "[[route]]\npath = \"/chat\"\ncomponent = \"chat.wasm\"\n\n\
                [[history]]\ntopics = \"ch*\"\nmessages = 10\nenvelope = \"json\"\n";
    std::fs::write(&config, text).unwrap();
    let checked = stdout_of_success(wshost().arg("check").arg("--config").arg(&config));
    assert!(
        checked.contains("history: 1 [[history]] entries"),
        "{checked}"
    );

    let server = Server::start_with(&["--config".into(), config.display().to_string()]);
    let mut ws = server.connect("/chat").await;
    for (offset, text) in [(1, "hi"), (2, "again")] {
        send_text(&mut ws, text).await;
        let got = json(&next_text(&mut ws).await);
        assert_eq!(got["offset"], offset, "{got}");
        assert_eq!(got["text"], format!("Сервер：{text}"));
    }
    drop(server);

    std::fs::write(&config, text.replace("messages = 10", "messages = 0")).unwrap();
    let out = wshost()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{error}");
    assert!(
        error.contains("wshost.toml: [[history]] #1: messages = 0: 1 to 1000000"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes on one Redis (`--cluster`, no config file): the history
/// is Redis's, so a client that left one process comes back on the other
/// and gets exactly the 50 messages published there meanwhile, then live
/// ones; and a client that keeps reconnecting, every other time to the
/// other process, while 10,000 messages are published, sees each offset
/// exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn across_two_processes_on_one_redis_nothing_is_missed_or_repeated() {
    let redis = Redis::start();
    let node = || Server::start_flagged(&["--cluster", &redis.url()], &[CHAT]);
    let (a, b) = (node(), node());
    let out = python_across(&a, &b, "away").await;
    assert!(out.contains("recovered 50"), "{out}");
    assert!(out.contains("stale epoch: reset"), "{out}");
    let out = python_across(&a, &b, "race").await;
    assert!(out.contains("no gap, no duplicate"), "{out}");
    // The stream is Redis's: its offsets are the cluster's.
    let top = redis.cli(&["hget", "wshost:hm:chat", "o"]);
    assert!(top.parse::<u64>().unwrap() > 10_000, "{top}");
}

/// Redis loses its data (restarted without persistence): a position of the
/// old epoch gets a reset, not a silent gap, and a client that stayed
/// connected is told too, then gets the new epoch's messages.
#[tokio::test(flavor = "multi_thread")]
async fn after_redis_loses_its_data_clients_get_a_reset() {
    let mut redis = Redis::start();
    let node = || Server::start_flagged(&["--cluster", &redis.url()], &[CHAT]);
    let (a, b) = (node(), node());
    let mut stays = a.connect("/chat").await;
    let mut publisher = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;
    send_text(&mut publisher, "before").await;
    let before = json(&next_text(&mut stays).await);
    assert_eq!(before["text"], "before", "{before}");
    let _ = next_text(&mut publisher).await;
    let (offset, epoch) = (before["offset"].as_u64().unwrap(), before["epoch"].clone());
    let epoch = epoch.as_str().unwrap();

    redis.kill();
    redis.restart();
    redis.wait_subscribed("chat", 2).await;
    // The client that stayed hears of it, from its process's catch-up after
    // resubscribing or from the next message (what is published while
    // Redis is away is dropped: it cannot be numbered).
    let mut frames = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while !frames
        .iter()
        .any(|f: &serde_json::Value| f["text"] == "after")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "after the restart: {frames:?}"
        );
        send_text(&mut publisher, "after").await;
        let wait = std::time::Duration::from_millis(300);
        while let Ok(text) = tokio::time::timeout(wait, next_text(&mut stays)).await {
            frames.push(json(&text));
        }
    }
    assert_eq!(frames[0]["reset"], true, "{frames:?}");
    let new_epoch = frames[0]["epoch"].as_str().unwrap().to_string();
    assert_ne!(new_epoch, epoch);
    for (i, frame) in frames[1..].iter().enumerate() {
        assert_eq!(frame["epoch"], *new_epoch, "{frames:?}");
        assert_eq!(frame["offset"], i + 1, "{frames:?}");
    }

    let mut back = a
        .connect(&format!("/chat?since={offset}&epoch={epoch}"))
        .await;
    let told = json(&next_text(&mut back).await);
    assert_eq!(told, serde_json::json!({"reset": true, "epoch": new_epoch}));
}

/// With `--cluster`, a guest's plain `subscribe` to a kept topic (here a
/// `[[history]]` rule's, for `guests/chat`, which never asks) is numbered
/// by Redis and delivered back through it: each client, alone on the
/// process (its mirror of the stream not followed when it comes), gets its
/// own message with the next offset.
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_subscribe_to_a_kept_topic_misses_nothing_on_the_cluster() {
    let redis = Redis::start();
    let dir = tempdir("history-cluster-config");
    std::fs::copy(guest("chat"), dir.join("chat.wasm")).unwrap();
    let config = dir.join("wshost.toml");
    let text = "[[route]]\npath = \"/chat\"\ncomponent = \"chat.wasm\"\n\n\
                [[history]]\ntopics = \"chat\"\nmessages = 10\nenvelope = \"json\"\n";
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let server = Server::start_with(&["--config".into(), config, "--cluster".into(), redis.url()]);
    for (offset, text) in [(1, "first"), (2, "second"), (3, "third")] {
        // Alone each time: this process's mirror of the stream is not
        // followed when the client subscribes.
        let mut ws = server.connect("/chat").await;
        send_text(&mut ws, text).await;
        let got = json(&next_text(&mut ws).await);
        assert_eq!(got["offset"], offset, "{got}");
        assert_eq!(got["text"], format!("Сервер：{text}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Redis restored older data (its offset went back, the epoch kept: a
/// restore from an older snapshot, or a failover that lost writes): the
/// next publish draws a new epoch, as a process already delivered past
/// Redis's offset, and subscribers get a reset, never reused offsets.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_that_went_back_starts_a_new_epoch() {
    let redis = Redis::start();
    let node = || Server::start_flagged(&["--cluster", &redis.url()], &[CHAT]);
    let (a, b) = (node(), node());
    let mut stays = a.connect("/chat").await;
    let mut publisher = b.connect("/chat").await;
    redis.wait_subscribed("chat", 2).await;
    let mut epoch = String::new();
    for text in ["one", "two", "three"] {
        send_text(&mut publisher, text).await;
        let got = json(&next_text(&mut stays).await);
        assert_eq!(got["text"], text, "{got}");
        epoch = got["epoch"].as_str().unwrap().to_string();
        let _ = next_text(&mut publisher).await;
    }
    assert_eq!(redis.cli(&["hset", "wshost:hm:chat", "o", "1"]), "0");
    send_text(&mut publisher, "four").await;
    let told = json(&next_text(&mut stays).await);
    assert_eq!(told["reset"], true, "{told}");
    assert_ne!(told["epoch"], *epoch);
    let four = json(&next_text(&mut stays).await);
    assert_eq!(
        (&four["text"], &four["offset"], &four["epoch"]),
        (&"four".into(), &1.into(), &told["epoch"])
    );
}

/// The example in JavaScript and Python (`guests/js/recover_chat.ts`,
/// `guests/python/recover_chat.py`) keeps the same wire contract, tested
/// the same way across two processes on one Redis: a client that left one
/// comes back on the other and gets exactly the 50 it missed, then live
/// ones; a stale epoch gets a reset.
#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_and_python_examples_keep_the_contract() {
    for lang in [Lang::Js, Lang::Python] {
        let redis = Redis::start();
        let route = format!("/chat={}", lang.guest("recover_chat").display());
        let node = || {
            let args = [
                "--route".into(),
                route.clone(),
                "--cluster".into(),
                redis.url(),
            ];
            Server::start_with(&args)
        };
        let (a, b) = (node(), node());
        let out = python_across(&a, &b, "away").await;
        assert!(out.contains("recovered 50"), "{lang:?}: {out}");
        assert!(out.contains("stale epoch: reset"), "{lang:?}: {out}");
    }
}
