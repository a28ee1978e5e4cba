//! A real headless Chromium, driven through chromedriver, loads the seed's
//! page, whose script talks to the echo guest: the greeting must appear in
//! the page itself.

mod support;

use std::time::Duration;
use support::webdriver::Browser;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_greeting_in_a_real_browser() {
    let server = Server::start(&[("/", "page"), ("/websocket", "echo")]);
    let url = format!("http://{}/", server.addr);
    let (heading, log) = tokio::task::spawn_blocking(move || {
        let Some(browser) = Browser::start() else {
            if std::env::var_os("WSHOST_SKIP_BROWSER").is_some() {
                eprintln!("SKIPPED: no chromium/chromedriver (WSHOST_SKIP_BROWSER is set)");
                return None;
            }
            panic!("no chromium or chromedriver on PATH: `apt-get install -y chromium chromium-driver` (or set WSHOST_SKIP_BROWSER=1)");
        };
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
