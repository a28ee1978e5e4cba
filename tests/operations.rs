//! Operating wshost: the admin listener's metrics and health endpoints, and
//! JSON logs for log shippers.

mod support;

use std::time::Duration;
use support::admin::{admin_addr, admin_get, sample};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_clients_come_talk_and_go() {
    let server = Server::start_flagged(
        &["--admin", "127.0.0.1:0"],
        &[("/echo", "echo"), ("/chat", "chat")],
    );
    let admin = admin_addr(&server).await;
    assert_eq!(admin_get(&admin, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(admin_get(&admin, "/readyz").await, (200, "ready\n".into()));

    let mut echo = server.connect("/echo").await;
    let mut chat = server.connect("/chat").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..3 {
        send_text(&mut echo, &format!("hi {i}")).await;
        next_text(&mut echo).await;
        send_text(&mut chat, &format!("hi {i}")).await;
        next_text(&mut chat).await;
    }
    assert!(server.get("/nowhere").await.starts_with("HTTP/1.1 404"));
    let (status, metrics) = admin_get(&admin, "/metrics").await;
    assert_eq!(status, 200);
    let at = |series: &str| sample(&metrics, series);
    assert_eq!(
        at(r#"wshost_connections_open{route="/echo"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        at(r#"wshost_connections_open{route="/chat"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        at(r#"wshost_messages_in_total{route="/echo"}"#),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        at(r#"wshost_bytes_in_total{route="/echo"}"#),
        12.0,
        "{metrics}"
    );
    assert!(
        at(r#"wshost_frames_out_total{route="/echo"}"#) >= 3.0,
        "{metrics}"
    );
    assert!(
        at(r#"wshost_bytes_out_total{route="/chat"}"#) > 12.0,
        "{metrics}"
    );
    assert_eq!(
        at(r#"wshost_requests_refused_total{reason="no_route"}"#),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        at(r#"wshost_instantiate_seconds_count{route="/echo"}"#),
        1.0,
        "{metrics}"
    );
    assert!(
        at(r#"wshost_event_seconds_count{route="/chat"}"#) >= 5.0,
        "{metrics}"
    );
    assert!(at("wshost_publish_fanout_count") >= 3.0, "{metrics}");
    assert!(!metrics.contains("id="), "no connection ids as labels");

    // A closed connection leaves the gauge.
    drop(echo);
    let open = r#"wshost_connections_open{route="/echo"}"#;
    support::admin::wait_for_sample(&admin, open, 0.0).await;
    assert_eq!(admin_get(&admin, "/nothing").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_failures_are_counted_by_kind() {
    let server = Server::start_flagged(
        &["--admin", "127.0.0.1:0", "--guest-cpu-timeout", "0.2"],
        &[("/crash", "crash"), ("/spin", "spin")],
    );
    let admin = admin_addr(&server).await;
    let _ = server.get("/crash?panic&before").await;
    let mut spin = server.connect("/spin").await;
    let _ = close_code(&mut spin).await;
    let (_, metrics) = admin_get(&admin, "/metrics").await;
    assert!(
        sample(&metrics, r#"wshost_guest_failures_total{kind="trap"}"#) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, r#"wshost_guest_failures_total{kind="cpu"}"#),
        1.0,
        "{metrics}"
    );
}

/// The wasm pool's gauges: its instances while handler-world connections
/// are open, and the warm slots (and the memory they keep) once they close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_gauges_show_instances_then_the_warm_slots_they_leave() {
    let server = Server::start_flagged(&["--admin", "127.0.0.1:0"], &[("/echo", "echo")]);
    let admin = admin_addr(&server).await;
    let (_, metrics) = admin_get(&admin, "/metrics").await;
    assert_eq!(sample(&metrics, "wshost_pool_instances"), 0.0, "{metrics}");
    let mut clients = Vec::new();
    for i in 0..3 {
        let mut ws = server.connect("/echo").await;
        send_text(&mut ws, &format!("hi {i}")).await;
        next_text(&mut ws).await;
        clients.push(ws);
    }
    let (_, metrics) = admin_get(&admin, "/metrics").await;
    assert_eq!(sample(&metrics, "wshost_pool_instances"), 3.0, "{metrics}");
    drop(clients);
    let deadline = tokio::time::Instant::now() + WAIT;
    let metrics = loop {
        let (_, metrics) = admin_get(&admin, "/metrics").await;
        if sample(&metrics, "wshost_pool_instances") == 0.0 {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        sample(&metrics, "wshost_pool_warm_slots") >= 3.0,
        "{metrics}"
    );
    assert!(
        sample(&metrics, "wshost_pool_resident_bytes") > 0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_as_soon_as_shutdown_starts() {
    let mut server = Server::start_flagged(
        &["--admin", "127.0.0.1:0", "--shutdown-timeout", "3"],
        &[("/echo", "echo"), ("/flood", "flood")],
    );
    let admin = admin_addr(&server).await;
    // A handler stuck in push keeps the shutdown draining for 3 s.
    let _stuck = non_reader(&server, "/flood").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(admin_get(&admin, "/readyz").await.0, 200);
    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admin_get(&admin, "/readyz").await,
        (503, "shutting down\n".into())
    );
    assert_eq!(
        admin_get(&admin, "/healthz").await.0,
        200,
        "alive while draining"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[tokio::test]
async fn json_logs_carry_the_route_and_connection_id_as_fields() {
    let server = Server::start_flagged(&["--log-format", "json"], &[("/echo", "echo")]);
    let mut ws = server.connect("/echo").await;
    send_text(&mut ws, "hi").await;
    next_text(&mut ws).await;
    drop(ws);
    server.wait_for_log("connection 1 ended").await;
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("connection 1 ended"))
        .unwrap();
    let object: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(object["span"]["route"], "/echo", "{line}");
    assert_eq!(object["span"]["id"], 1, "{line}");
    assert_eq!(object["level"], "DEBUG", "{line}");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

/// The component at `path` rewritten (by rename) as a new build of the
/// same code: its bytes and a custom section naming `build` (a reload
/// loads only components whose bytes changed).
fn rebuild(path: &std::path::Path, build: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    // Custom section (id 0): size, name "build", one byte.
    bytes.extend_from_slice(&[0, 7, 5, b'b', b'u', b'i', b'l', b'd', build]);
    let staged = path.with_extension("new");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// `guest`'s component copied to `dir/app.wasm` (by rename, as a deploy
/// would: never a half-written file).
fn deploy(dir: &std::path::Path, guest_name: &str) -> std::path::PathBuf {
    let target = dir.join("app.wasm");
    let staged = dir.join("app.wasm.new");
    std::fs::copy(guest(guest_name), &staged).unwrap();
    std::fs::rename(&staged, &target).unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_echo_for_mirror_under_a_live_connection() {
    let dir = tempdir("reload");
    let app = deploy(&dir, "echo");
    let server = Server::start_with(&["--route".into(), format!("/ws={}", app.display())]);
    let mut old = server.connect("/ws").await;
    send_text(&mut old, "a").await;
    assert_eq!(next_text(&mut old).await, "Привет, a!");
    next_text(&mut old).await;

    deploy(&dir, "mirror");
    server.signal("HUP");
    server.wait_for_log("reloaded 1 of 1 routes").await;
    let mut new = server.connect("/ws").await;
    send_text(&mut new, "b").await;
    assert_eq!(next_text(&mut new).await, "b", "new connections get mirror");
    // The open connection was not dropped and finishes on echo.
    send_text(&mut old, "c").await;
    assert_eq!(next_text(&mut old).await, "Привет, c!");

    // A component that does not load leaves the running one in place.
    std::fs::write(dir.join("app.wasm.new"), b"not wasm").unwrap();
    std::fs::rename(dir.join("app.wasm.new"), &app).unwrap();
    server.signal("HUP");
    server
        .wait_for_log("route /ws keeps its running component")
        .await;
    let mut after = server.connect("/ws").await;
    send_text(&mut after, "d").await;
    assert_eq!(next_text(&mut after).await, "d", "still mirror");
    // Nor may a route change its world by a reload.
    deploy(&dir, "event_mirror");
    server.signal("HUP");
    server
        .wait_for_log("its world changed from handler to events")
        .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_an_event_route_and_open_sockets_stay_on_the_old_code() {
    let dir = tempdir("watch");
    let app = deploy(&dir, "chat");
    let server = Server::start_with(&[
        "--watch".into(),
        "--route".into(),
        format!("/chat={}", app.display()),
    ]);
    let mut old = server.connect("/chat").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_text(&mut old, "a").await;
    assert_eq!(next_text(&mut old).await, "Сервер：a");

    // mtime resolution: make sure the new file's stamp differs.
    tokio::time::sleep(Duration::from_millis(20)).await;
    deploy(&dir, "event_mirror");
    server.wait_for_log("reloaded 1 of 1 routes").await;
    let mut new = server.connect("/chat").await;
    send_text(&mut new, "b").await;
    assert_eq!(
        next_text(&mut new).await,
        "b",
        "new sockets get the new code"
    );
    send_text(&mut old, "c").await;
    assert_eq!(
        next_text(&mut old).await,
        "Сервер：c",
        "open sockets keep the old"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Clients that keep talking through repeated reloads (SIGHUP) of a
/// handler route, an event route and a coro route (whose clients connect
/// anew for each round: new tasks meet instances being retired): none is
/// dropped, none misses a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_no_connection() {
    const CLIENTS: usize = 60;
    const RELOADS: usize = 3;
    let dir = tempdir("reload-load");
    let echo = deploy(&dir, "echo");
    let [chat, coro] = ["chat", "coro_echo"].map(|name| {
        let copy = dir.join(format!("{name}.wasm"));
        std::fs::copy(guest(name), &copy).unwrap();
        copy
    });
    let server = Server::start_with(&[
        "--route".into(),
        format!("/echo={}", echo.display()),
        "--route".into(),
        format!("/chat={}", chat.display()),
        "--route".into(),
        format!("/coro={}", coro.display()),
    ]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let path = ["/echo", "/chat", "/coro"][i % 3];
        let mut ws = server.connect(path).await;
        let url = format!("ws://{}{path}", server.addr);
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || rounds == 0 {
                let word = format!("c{i}r{rounds}");
                if path == "/coro" && rounds > 0 {
                    let _ = futures_util::SinkExt::close(&mut ws).await;
                    let connected = tokio_tungstenite::connect_async(url.as_str()).await;
                    ws = connected.expect("a coro client could not connect").0;
                }
                send_text(&mut ws, &word).await;
                if path != "/chat" {
                    assert_eq!(next_text(&mut ws).await, format!("Привет, {word}!"));
                    assert_eq!(next_text(&mut ws).await, format!("Как ты там, {word}?"));
                } else {
                    // Other chat clients' messages arrive too: read to ours.
                    let mine = format!("Сервер：{word}");
                    while next_text(&mut ws).await != mine {}
                }
                rounds += 1;
            }
            rounds
        }));
    }
    for reload in 1..=RELOADS {
        for app in [&echo, &chat, &coro] {
            rebuild(app, reload as u8);
        }
        server.signal("HUP");
        let done = "reloaded 3 of 3 routes";
        let deadline = tokio::time::Instant::now() + WAIT;
        while server.log().matches(done).count() < reload {
            assert!(tokio::time::Instant::now() < deadline, "{}", server.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        total += client
            .await
            .expect("a client lost its connection or a reply");
    }
    let log = server.log();
    let times: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("reloaded 3 of 3 routes in ").nth(1))
        .collect();
    eprintln!("{CLIENTS} clients, {total} round trips through {RELOADS} reloads taking {times:?}");
    assert!(
        total >= CLIENTS * (RELOADS + 1),
        "too few round trips: {total}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload gives a coro route new instances; the old ones serve their
/// tasks to the end, then go (an instance holds its memory: kept, every
/// reload would leak one per core).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_coro_route_lets_its_old_instances_go_once_their_tasks_end() {
    let dir = tempdir("reload-coro");
    let app = deploy(&dir, "coro_mirror");
    let server = Server::start_with(&[
        "--admin".into(),
        "127.0.0.1:0".into(),
        "--route".into(),
        format!("/c={}", app.display()),
    ]);
    let admin = admin_addr(&server).await;
    let instances = async || {
        let (_, metrics) = admin_get(&admin, "/metrics").await;
        sample(&metrics, r#"wshost_coro_instances{route="/c"}"#)
    };
    let mut old = server.connect("/c").await;
    send_text(&mut old, "a").await;
    assert_eq!(next_text(&mut old).await, "a");
    assert_eq!(instances().await, 1.0);

    let app = deploy(&dir, "coro_echo");
    server.signal("HUP");
    server.wait_for_log("reloaded 1 of 1 routes").await;
    let mut new = server.connect("/c").await;
    send_text(&mut new, "b").await;
    assert_eq!(
        next_text(&mut new).await,
        "Привет, b!",
        "new tasks get the new code"
    );
    assert_eq!(next_text(&mut new).await, "Как ты там, b?");
    send_text(&mut old, "c").await;
    assert_eq!(next_text(&mut old).await, "c", "the open one keeps the old");
    assert_eq!(instances().await, 2.0);

    drop(old);
    let deadline = tokio::time::Instant::now() + WAIT;
    while instances().await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} instances: the old one stays",
            instances().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_text(&mut new, "d").await;
    assert_eq!(next_text(&mut new).await, "Привет, d!");

    // An idle instance (kept for the next task) goes at the reload itself.
    drop(new);
    server.wait_for_log("connection 2 ended").await;
    assert_eq!(instances().await, 1.0);
    rebuild(&app, 1);
    server.signal("HUP");
    server.wait_for_logs("reloaded 1 of 1 routes", 2).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while instances().await != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the idle one stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// glibc keeps what a burst of connections used; once the burst has gone
/// the host gives it back (`malloc_trim`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_has_gone_its_memory_is_given_back() {
    const BURST: usize = 1500;
    raise_fd_limit();
    let server = Server::start(&[("/c", "coro_mirror")]);
    let mut first = server.connect("/c").await;
    send_text(&mut first, "a").await;
    assert_eq!(next_text(&mut first).await, "a");
    let before = rss_of(server.pid());

    let mut burst = Vec::new();
    while burst.len() < BURST {
        let batch = (0..100).map(|_| server.connect("/c"));
        burst.extend(futures_util::future::join_all(batch).await);
    }
    for ws in burst.iter_mut().step_by(100) {
        send_text(ws, "b").await;
        assert_eq!(next_text(ws).await, "b");
    }
    let during = rss_of(server.pid());
    drop(burst);
    server
        .wait_for_log("a burst of connections has gone: gave back")
        .await;
    let after = rss_of(server.pid());
    let mib = |b: u64| b as f64 / 1048576.0;
    assert!(
        after < before + (during - before) / 2,
        "resident {:.1} MiB before the burst, {:.1} during, {:.1} after",
        mib(before),
        mib(during),
        mib(after)
    );
    send_text(&mut first, "c").await;
    assert_eq!(next_text(&mut first).await, "c");
}

/// The review's M6: every SIGHUP reloaded every route and spent a version
/// of it (an event route's old instance serves its open sockets, and the
/// pool has room for four): with sockets left open on each, the fifth
/// reload left new requests 500. Now a reload loads only what changed, and
/// swaps a route only while the pool has room for one more version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_load_only_what_changed_and_never_past_the_pools_room() {
    let dir = tempdir("reload-room");
    let app = deploy(&dir, "event_mirror");
    let server = Server::start_with(&["--route".into(), format!("/e={}", app.display())]);
    let mut open = Vec::new();
    let echo = async |open: &mut Vec<Client>, word: &str| {
        let mut ws = server.connect("/e").await;
        send_text(&mut ws, word).await;
        assert_eq!(next_text(&mut ws).await, word);
        open.push(ws);
    };
    // Unchanged (a certificate renewal's SIGHUP, say): nothing is spent.
    for round in 1..=6 {
        echo(&mut open, &format!("same {round}")).await;
        server.signal("HUP");
        server.wait_for_logs("reloaded 0 of 1 routes", round).await;
    }
    // A new build each round, a socket left open on each version: three
    // more versions fit beside the first; then the route keeps its
    // running one and says why, and requests are served all along.
    for build in 1..=5u8 {
        rebuild(&app, build);
        server.signal("HUP");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let log = server.log();
            let done = log.matches("reloaded 1 of 1 routes").count()
                + log.matches("keeps its running component").count();
            if done == usize::from(build) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{log}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        echo(&mut open, &format!("build {build}")).await;
    }
    let log = server.log();
    assert_eq!(log.matches("reloaded 1 of 1 routes").count(), 3, "{log}");
    assert!(
        log.contains("4 versions of it still serve open connections"),
        "{log}"
    );
    // Once the older versions' sockets close, the route reloads again.
    open.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rebuild(&app, 9);
    server.signal("HUP");
    server.wait_for_logs("reloaded 1 of 1 routes", 4).await;
    echo(&mut open, "after").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The admin listener answers 32 requests at once (a private scraper's
/// need); a 33rd connection is closed unanswered at once, costing nothing,
/// and once the 32 are gone the listener answers again. Idle connections
/// that never send a request are what a flood of them looks like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_32_at_once_and_closes_the_rest() {
    use tokio::io::AsyncReadExt;
    let server = Server::start_flagged(&["--admin", "127.0.0.1:0"], &[("/ws", "echo")]);
    let admin = admin_addr(&server).await;
    let mut idle = Vec::new();
    for _ in 0..32 {
        idle.push(tokio::net::TcpStream::connect(&admin).await.unwrap());
    }
    // Each is taken in turn: let the listener accept all 32.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(&admin).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a 33rd connection was kept open: {read:?}"
    );
    // The public port is not held up.
    let mut ws = server.connect("/ws").await;
    assert_still_answers(&mut ws).await;
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut tcp = tokio::net::TcpStream::connect(&admin).await.unwrap();
        let asked = tokio::io::AsyncWriteExt::write_all(
            &mut tcp,
            b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n",
        );
        let _ = asked.await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never answered again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
