//! Guests that misbehave cost only their own connection. Every case keeps a
//! healthy echo connection open and checks it still answers afterwards.

mod support;

use std::time::{Duration, Instant};
use support::*;

const ECHO: (&str, &str) = ("/echo", "echo");

/// Assert `ws` ends with a 1011 Close whose reason contains `why`.
async fn assert_closed_1011(ws: &mut Client, why: &str) {
    match close_frame(ws).await {
        Some((1011, reason)) => assert!(reason.contains(why), "reason {reason:?}"),
        other => panic!("expected Close 1011 ({why}), got {other:?}"),
    }
}

/// Assert a plain GET on `path` is answered 500 naming `why`.
async fn assert_500(server: &Server, path: &str, why: &str) {
    let response = server.get(path).await;
    assert!(response.starts_with("HTTP/1.1 500 "), "{response}");
    assert!(response.contains(why), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_stopped_and_starves_nobody() {
    let server = Server::start_flagged(&["--guest-cpu-timeout", "2"], &[ECHO, ("/spin", "spin")]);
    let mut echo = healthy_echo(&server, "/echo").await;
    // More spinning guests than the host has worker threads.
    let started = Instant::now();
    let mut spinners = Vec::new();
    for _ in 0..3 {
        spinners.push(server.connect("/spin").await);
    }
    // While they spin, the echo guest still answers quickly: spinning
    // guests yield to the runtime every epoch tick.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        assert_still_answers(&mut echo).await;
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("slowest echo round trip beside 3 spinning guests: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "echo took {slowest:?} beside spinning guests"
    );
    for ws in &mut spinners {
        assert_closed_1011(ws, "without calling the host").await;
    }
    // The budget is CPU time: spinners sharing an event loop share its
    // core, so each takes longer by the wall clock (here ~6.5 s with two on
    // each of two loops, on a 2-core machine). At worst one core runs all
    // three: 3 x 2 s, and some slack for the debug build.
    let stopped = started.elapsed();
    assert!(
        stopped >= Duration::from_millis(1900) && stopped < Duration::from_secs(9),
        "spinners stopped after {stopped:?}; the budget is 2 s of CPU each"
    );
    assert_500(&server, "/spin?before", "without calling the host").await;
    assert_still_answers(&mut echo).await;
}

#[tokio::test]
async fn a_memory_bomb_is_refused_at_the_cap() {
    let cap = 32 << 20;
    let server = Server::start_flagged(
        &["--guest-memory", &cap.to_string()],
        &[ECHO, ("/bomb", "memory_bomb")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    let before = rss_of(server.pid());
    let mut bomb = server.connect("/bomb").await;
    assert_closed_1011(&mut bomb, &format!("{cap}-byte cap")).await;
    assert_500(&server, "/bomb?before", "memory would exceed").await;
    assert_still_answers(&mut echo).await;
    // The refused memory is given back with the instance.
    let after = rss_of(server.pid());
    assert!(
        after < before + cap as u64,
        "RSS grew from {before} to {after} bytes after two bombs capped at {cap}"
    );
}

#[tokio::test]
async fn crashes_after_upgrade_close_1011_and_before_upgrade_answer_500() {
    let server = Server::start(&[ECHO, ("/crash", "crash")]);
    let mut echo = healthy_echo(&server, "/echo").await;
    for how in ["panic", "trap", "overflow"] {
        let mut ws = server.connect(&format!("/crash?{how}")).await;
        assert_closed_1011(&mut ws, "handler trapped").await;
        assert_500(&server, &format!("/crash?{how}&before"), "handler trapped").await;
        assert_still_answers(&mut echo).await;
    }
    let log = server.log();
    // The panic message reaches the log through the guest's stderr, and the
    // trap is logged with its route and connection id.
    assert!(log.contains("crashing on purpose"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("handler trapped")
            && l.contains("route=/crash")
            && l.contains("id=")),
        "{log}"
    );
}

/// The review's M1: a call that fails or says "closed" at once is not a
/// wait. A guest that calls `push` (or `recv`) in a loop after its peer has
/// gone is stopped by its CPU budget as `loop {}` is, in the handler world
/// and in the coro world (where it held its whole instance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_return_at_once_after_the_peer_left_do_not_renew_the_cpu_budget() {
    let server = Server::start_flagged(
        &["--guest-cpu-timeout", "0.3"],
        &[ECHO, ("/probe", "probe"), ("/coro", "coro_probe")],
    );
    let mut echo = healthy_echo(&server, "/echo").await;
    for (at, call) in [("push", 1), ("recv", 2)] {
        let mut ws = server.connect(&format!("/probe?after-close={at}")).await;
        assert_eq!(next_text(&mut ws).await, "ready");
        drop(ws);
        server
            .wait_for_logs("handler stopped: ran for over", call)
            .await;
    }
    for (command, stops) in [("after-close-push", 3), ("after-close-recv", 4)] {
        let mut ws = server.connect("/coro").await;
        send_text(&mut ws, command).await;
        assert_eq!(next_text(&mut ws).await, "ready");
        drop(ws);
        server
            .wait_for_logs("handler stopped: ran for over", stops)
            .await;
    }
    assert_still_answers(&mut echo).await;
}
