//! The guest SDKs, TypeScript (`guest-sdk/js`, `@wshost/guest`) and
//! Python (`guest-sdk/python`, `wshost`), driven through the same probe in
//! each (`guests/js/sdk_events.ts`, `guests/python/sdk_events.py`) by real
//! clients: what the examples do not reach (an HTTP answer from
//! `upgrade`, `data` kept in the host, the subprotocol, errors with a
//! code, a callback that throws, one that is async).

mod support;

use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn server(lang: Lang) -> Server {
    Server::start_in(lang, "/sdk", "sdk_events")
}

/// `#[tokio::test] fn js::<test>()` and `python::<test>()`: the SDK
/// languages of [`in_every_language!`].
macro_rules! in_both_languages {
    ($($test:ident),* $(,)?) => {
        in_every_language!(@one js, Js, $($test),*);
        in_every_language!(@one python, Python, $($test),*);
    };
}

in_both_languages!(
    a_response_from_upgrade_is_the_http_answer,
    what_upgrade_cannot_use_is_a_500_not_an_upgrade,
    data_address_and_protocol_reach_the_socket,
    host_errors_have_a_class_and_a_code,
    a_socket_publishes_to_the_others,
    text_the_host_cannot_take_does_not_trap_the_instance,
    each_socket_keeps_its_own_data,
    an_async_callback_is_refused_and_a_returned_promise_logged,
);

/// `upgrade` returning a `Response` answers over HTTP, status, header and
/// body as the guest wrote them.
async fn a_response_from_upgrade_is_the_http_answer(lang: Lang) {
    let server = server(lang);
    let answer = server.get("/sdk?deny=1").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-why: asked"),
        "{answer}"
    );
    assert!(answer.ends_with("denied\n"), "{answer}");
}

/// An `upgrade` that returns neither an upgrade nor a response, or `data`
/// past the host's 16 KiB, is refused with 500 and logged, and the
/// instance every socket shares carries on.
async fn what_upgrade_cannot_use_is_a_500_not_an_upgrade(lang: Lang) {
    let server = server(lang);
    let wrong = server
        .raw_upgrade(&handshake(&server, "/sdk?wrong=1"))
        .await;
    assert!(wrong.starts_with("HTTP/1.1 500"), "{wrong}");
    let big = server.raw_upgrade(&handshake(&server, "/sdk?big=1")).await;
    assert!(big.starts_with("HTTP/1.1 500"), "{big}");
    server.wait_for_log("at most 16384").await;
    let mut ws = server.connect("/sdk?name=after").await;
    next_text(&mut ws).await;
    send_text(&mut ws, "whoami").await;
    assert_eq!(next_text(&mut ws).await, "after");
    // Refused by the SDK, not by a trap the host answered for it.
    assert!(!server.log().contains("trapped"), "{}", server.log());
}

/// Text with a lone surrogate (`JSON.parse` and `json.loads` make it from
/// `"\ud800"`) never traps the instance: Python refuses it with a
/// `ValueError`, JavaScript sends it as UTF-8 with a replacement.
async fn text_the_host_cannot_take_does_not_trap_the_instance(lang: Lang) {
    let server = server(lang);
    let mut ws = server.connect("/sdk?name=sam").await;
    next_text(&mut ws).await;
    send_text(&mut ws, "surrogate").await;
    while next_text(&mut ws).await != "survived" {}
    send_text(&mut ws, "whoami").await;
    assert_eq!(next_text(&mut ws).await, "sam");
    assert!(!server.log().contains("trapped"), "{}", server.log());
}

/// A WebSocket handshake for `path`, as raw HTTP.
fn handshake(server: &Server, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    )
}

/// What `upgrade` returned is the socket's `data`, with the remote address
/// and the chosen subprotocol; assigning `data` keeps the new value.
async fn data_address_and_protocol_reach_the_socket(lang: Lang) {
    let server = server(lang);
    let mut request = server.url("/sdk?name=ann").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v2, chat.v1".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "chat.v2",
        "the first offered protocol is chosen"
    );
    let hello: serde_json::Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
    assert_eq!(hello["name"], "ann");
    assert_eq!(hello["protocol"], "chat.v2");
    assert!(
        hello["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{hello}"
    );
    send_text(&mut ws, "rename bob").await;
    assert_eq!(next_text(&mut ws).await, "renamed");
    send_text(&mut ws, "whoami").await;
    assert_eq!(next_text(&mut ws).await, "bob");
}

/// A refused host call throws a `WshostError` subclass with the WIT's
/// code and the host's words; a callback that throws is logged and the
/// socket stays open.
async fn host_errors_have_a_class_and_a_code(lang: Lang) {
    let server = server(lang);
    let mut ws = server.connect("/sdk").await;
    next_text(&mut ws).await;
    send_text(&mut ws, "bad-close").await;
    let told = next_text(&mut ws).await;
    assert!(
        told.starts_with("true ProtocolError protocol protocol: "),
        "{told}"
    );
    send_text(&mut ws, "throw").await;
    server.wait_for_log("thrown on purpose").await;
    send_text(&mut ws, "whoami").await;
    assert_eq!(next_text(&mut ws).await, "");
}

/// The event world calls its callbacks synchronously: an `async` one
/// (`async function`, `async def`) is refused where it is registered, at
/// build time, with a `TypeError` that names it; a plain one that returns
/// a promise or a coroutine anyway is logged (a coroutine is closed unrun)
/// and the socket stays open.
async fn an_async_callback_is_refused_and_a_returned_promise_logged(lang: Lang) {
    let server = server(lang);
    let mut ws = server.connect("/sdk?name=ann").await;
    next_text(&mut ws).await;
    send_text(&mut ws, "refused").await;
    let refused = next_text(&mut ws).await;
    let async_kind = match lang {
        Lang::Python => "_later is an async def",
        _ => "an async function",
    };
    assert!(
        refused.starts_with(&format!("message: {async_kind}"))
            || refused.starts_with(&format!("on_message: {async_kind}")),
        "{refused}"
    );
    send_text(&mut ws, "promise").await;
    send_text(&mut ws, "coroutine").await;
    let returned = match lang {
        Lang::Python => "on_message: returned an awaitable (coroutine) that nothing awaits",
        _ => "message: returned a promise; callbacks must be synchronous",
    };
    server.wait_for_log(returned).await;
    send_text(&mut ws, "whoami").await;
    // Each language's answer to the command it lacks comes first
    // (`unknown promise`, `unknown coroutine`).
    while next_text(&mut ws).await != "ann" {}
    let log = server.log();
    // Closed, not left to the collector (which would warn).
    assert!(!log.contains("never awaited"), "{log}");
    assert!(!log.contains("trapped"), "{log}");
}

/// `ws.publish` reaches the topic's other subscribers, not the sender
/// (Bun's rule).
async fn a_socket_publishes_to_the_others(lang: Lang) {
    let server = server(lang);
    let mut a = server.connect("/sdk").await;
    let mut b = server.connect("/sdk").await;
    next_text(&mut a).await;
    next_text(&mut b).await;
    send_text(&mut a, "sub room").await;
    assert_eq!(next_text(&mut a).await, "true 1");
    send_text(&mut b, "sub room").await;
    assert_eq!(next_text(&mut b).await, "true 2");
    send_text(&mut a, "pub room hello there").await;
    assert_eq!(next_text(&mut b).await, "hello there");
    assert_eq!(next_text(&mut a).await, "sent to 1");
}

/// Each socket keeps its own `data`: the TypeScript SDK encodes every
/// attachment into one buffer, so a socket opened after another, or
/// renamed, must not change what the other reads.
async fn each_socket_keeps_its_own_data(lang: Lang) {
    let server = server(lang);
    let long = "a".repeat(300);
    let mut a = server.connect(&format!("/sdk?name={long}")).await;
    next_text(&mut a).await;
    let mut b = server.connect("/sdk?name=b").await;
    next_text(&mut b).await;
    send_text(&mut b, "rename bee").await;
    assert_eq!(next_text(&mut b).await, "renamed");
    send_text(&mut a, "whoami").await;
    assert_eq!(next_text(&mut a).await, long);
    send_text(&mut b, "whoami").await;
    assert_eq!(next_text(&mut b).await, "bee");
}

/// The Python handler world's socket (`guests/python/sdk_handler.py`): its
/// id, asked of the host when first wanted, is the hub's; it subscribes by
/// it; and how the peer closed reaches `close_info` through `recv` and
/// through iteration alike.
#[tokio::test]
async fn python_handler_socket_has_the_hubs_id_and_the_peers_close() {
    let server = Server::start_in(Lang::Python, "/probe", "sdk_handler");
    let mut ids = Vec::new();
    let mut sockets = Vec::new();
    for path in ["/probe", "/probe", "/probe?iter"] {
        let mut ws = server.connect(path).await;
        let hello = next_text(&mut ws).await;
        let (id, listed) = hello.split_once(' ').expect("id and listed");
        assert_eq!(listed, "True", "{hello}");
        ids.push(id.to_string());
        sockets.push(ws);
    }
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    let [watcher, a, b] = &mut sockets[..] else {
        unreachable!()
    };
    send_text(a, "hi").await;
    assert_eq!(next_text(watcher).await, format!("{}: hi", ids[1]));
    for (ws, code, reason) in [(a, 4000, "from a"), (b, 4001, "from b")] {
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })))
        .await
        .unwrap();
    }
    let mut told = vec![next_text(watcher).await, next_text(watcher).await];
    told.sort();
    assert_eq!(
        told,
        [
            format!("{} closed, seen by recv: 4000 from a", ids[1]),
            format!("{} closed, seen by iteration: 4001 from b", ids[2]),
        ],
    );
}
