//! A real headless Chromium loads the seed's page, whose script talks to the
//! echo guest: the greeting must appear in the page.

mod support;

use std::process::Command;
use support::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[tokio::test]
async fn the_page_shows_the_greeting_in_a_real_browser() {
    let Some(browser) = chromium() else {
        if std::env::var_os("WSHOST_SKIP_BROWSER").is_some() {
            eprintln!("SKIPPED: no chromium (WSHOST_SKIP_BROWSER is set)");
            return;
        }
        panic!("no chromium on PATH: `apt-get install -y chromium` (or set WSHOST_SKIP_BROWSER=1)");
    };
    let server = Server::start(&[("/", "page"), ("/websocket", "echo")]);
    let profile = std::env::temp_dir().join(format!("wshost-chromium-{}", std::process::id()));
    let url = format!("http://{}/", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .output()
            .expect("running chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<h1>Сервер WebSocket Swoole</h1>"),
        "page not rendered:\n{dom}"
    );
    assert!(
        dom.contains("Получена информация от сервера: Привет, hello!"),
        "greeting missing from the page:\n{dom}\nchromium stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("Как ты там, hello?"), "{dom}");
}
