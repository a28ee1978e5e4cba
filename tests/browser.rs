//! A real headless Chromium, driven through chromedriver, loads the seed's
//! page, whose script talks to the echo guest: the greeting must appear in
//! the page itself. And it opens a socket offering subprotocols, as
//! graphql-ws or STOMP clients do.

mod support;

use std::time::Duration;
use support::webdriver::Browser;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_greeting_in_a_real_browser() {
    let server = Server::start(&[("/", "page"), ("/websocket", "echo")]);
    let url = format!("http://{}/", server.addr);
    let (heading, log) = tokio::task::spawn_blocking(move || {
        let browser = browser()?;
        browser.open(&url);
        let heading = browser.eval("return document.querySelector('h1').textContent");
        let log = browser.wait_for(
            "return document.getElementById('log').innerText",
            "Как ты там, hello?",
            Duration::from_secs(10),
        );
        Some((heading, log))
    })
    .await
    .unwrap()
    .unzip();
    let Some(log) = log else { return };
    assert_eq!(heading.unwrap(), "Сервер WebSocket Swoole");
    assert!(
        log.contains("Подключен к серверу WebSocket."),
        "page log:\n{log}"
    );
    assert!(
        log.contains("Получена информация от сервера: Привет, hello!"),
        "page log:\n{log}\nserver log:\n{}",
        server.log()
    );
    assert!(
        log.contains("Получена информация от сервера: Как ты там, hello?"),
        "page log:\n{log}"
    );
}

/// A headless Chromium, or `None` (skipped) when there is none and
/// `WSHOST_SKIP_BROWSER` is set.
fn browser() -> Option<Browser> {
    let browser = Browser::start();
    if browser.is_none() {
        if std::env::var_os("WSHOST_SKIP_BROWSER").is_some() {
            eprintln!("SKIPPED: no chromium/chromedriver (WSHOST_SKIP_BROWSER is set)");
            return None;
        }
        panic!(
            "no chromium or chromedriver on PATH: `apt-get install -y chromium chromium-driver` (or set WSHOST_SKIP_BROWSER=1)"
        );
    }
    browser
}

/// Open a socket to `path` from the page at `/`, offering `protocols`;
/// what the page saw: the picked subprotocol and the first echo, or the
/// close code.
fn open_with_protocols(server: &Server, path: &str, protocols: &str) -> Option<String> {
    let url = format!("http://{}/", server.addr);
    let path = path.to_string();
    let protocols = protocols.to_string();
    let browser = browser()?;
    browser.open(&url);
    browser.eval(&format!(
        r#"window.seen = 'pending';
        const ws = new WebSocket('ws://' + location.host + '{path}', {protocols});
        ws.onopen = () => ws.send('hi');
        ws.onmessage = e => {{ window.seen = 'protocol=' + ws.protocol + ' echo=' + e.data; }};
        ws.onclose = e => {{ if (window.seen === 'pending') window.seen = 'closed ' + e.code; }};"#
    ));
    Some(browser.wait_for("return window.seen", "=", Duration::from_secs(10)))
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_gets_the_subprotocol_the_handler_picked() {
    let server = Server::start(&[
        ("/", "page"),
        ("/mirror", "mirror"),
        ("/events", "event_mirror"),
    ]);
    let seen = tokio::task::block_in_place(|| {
        open_with_protocols(&server, "/mirror", r#"["graphql-transport-ws", "chat"]"#)
    });
    let Some(seen) = seen else { return };
    assert_eq!(
        seen,
        "protocol=graphql-transport-ws echo=hi",
        "{}",
        server.log()
    );
    // The same in the event world.
    let seen = tokio::task::block_in_place(|| {
        open_with_protocols(&server, "/events", r#"["mqtt", "graphql-transport-ws"]"#)
    });
    assert_eq!(seen.unwrap(), "protocol=mqtt echo=hi", "{}", server.log());
}
