//! `serve --config`: the README's and the book's example files, per-route
//! limits and WASI grants, command-line overrides, and files that are refused.

mod support;

use futures_util::SinkExt;
use std::path::{Path, PathBuf};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// The complete config files of a page: each ```toml block after an
/// `<!-- example: wshost.toml -->` line.
fn examples_in(page: &str) -> Vec<String> {
    page.split("<!-- example: wshost.toml -->\n```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .map(str::to_string)
        .collect()
}

/// `example`, written into `dir` beside copies of the guests the examples
/// name, the directory they grant and a certificate.
fn write_example(dir: &Path, example: &str) -> PathBuf {
    for name in ["page", "echo", "chat", "mirror", "broadcast"] {
        std::fs::copy(guest(name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::create_dir_all(dir.join("static")).unwrap();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("tls/chain.pem"), issued.cert.pem()).unwrap();
    std::fs::write(dir.join("tls/key.pem"), issued.signing_key.serialize_pem()).unwrap();
    let path = dir.join("wshost.toml");
    std::fs::write(&path, example).unwrap();
    path
}

/// The README's example config (the complete set of keys), written into `dir`.
fn readme_example(dir: &Path) -> PathBuf {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let examples = examples_in(&readme);
    assert_eq!(examples.len(), 1, "the README has one example config");
    write_example(dir, &examples[0])
}

/// Every page of the book (`docs/src`), with its path.
fn book_pages() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, pages: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, pages);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut pages = Vec::new();
    walk(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/src")),
        &mut pages,
    );
    pages
}

/// Every config example of the book is a file `wshost check --config`
/// accepts, components and all.
#[test]
fn every_config_example_in_the_book_is_a_valid_config() {
    let mut checked = 0;
    for (page, text) in book_pages() {
        for (n, example) in examples_in(&text).iter().enumerate() {
            let dir = tempdir(&format!("config-book-{checked}"));
            let path = write_example(&dir, example);
            let out = wshost()
                .arg("check")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} example {n}:\n{example}\n{}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    assert!(
        checked >= 3,
        "only {checked} config examples found in the book"
    );
}

#[test]
fn the_readme_example_is_a_valid_config() {
    let dir = tempdir("config-readme");
    let path = readme_example(&dir);
    let stdout = stdout_of_success(wshost().arg("check").arg("--config").arg(&path));
    assert!(stdout.contains("route /chat:"), "{stdout}");
    assert!(stdout.contains("(world events)"), "{stdout}");
    assert!(stdout.contains("tls: "), "{stdout}");
    assert!(
        stdout.contains("a valid wshost config; 3 routes load"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    for name in ["probe", "mirror"] {
        std::fs::copy(guest(name), dir.join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::create_dir_all(dir.join("static")).unwrap();
    std::fs::write(dir.join("static/hello.txt"), "hello from the host").unwrap();
    let path = dir.join("wshost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const CONFIG: &str = r#"
[limits]
ping_interval = 0

[[route]]
path = "/granted"
component = "probe.wasm"
env = { GREETING = "hi" }
dirs = [{ host = "static", guest = "/static" }]

[[route]]
path = "/bare"
component = "probe.wasm"

[[route]]
path = "/small"
component = "mirror.wasm"
limits = { max_message_size = 100 }

[[route]]
path = "/mirror"
component = "mirror.wasm"
"#;

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn routes_get_their_own_limits_and_only_the_grants_they_are_given() {
    let dir = tempdir("config-serve");
    let path = write_config(&dir, CONFIG);
    let server = Server::start_with(&["--config".into(), path.display().to_string()]);
    assert_eq!(body(&server.get("/granted?env=GREETING").await), "hi");
    assert_eq!(
        body(&server.get("/granted?file=/static/hello.txt").await),
        "hello from the host"
    );
    assert_eq!(body(&server.get("/bare?env=GREETING").await), "unset");
    assert!(
        server
            .get("/bare?file=/static/hello.txt")
            .await
            .starts_with("HTTP/1.1 404")
    );

    let big = "x".repeat(500);
    let mut mirror = server.connect("/mirror").await;
    mirror.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_text(&mut mirror).await, big);
    let mut small = server.connect("/small").await;
    small.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(
        close_code(&mut small).await,
        Some(1009),
        "the route's own limit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_flag_on_the_command_line_overrides_the_file_for_every_route() {
    let dir = tempdir("config-override");
    let path = write_config(&dir, CONFIG);
    let server = Server::start_with(&[
        "--config".into(),
        path.display().to_string(),
        "--max-message-size".into(),
        "1000".into(),
    ]);
    let big = "x".repeat(500);
    let mut small = server.connect("/small").await;
    small.send(Message::text(big.clone())).await.unwrap();
    assert_eq!(next_text(&mut small).await, big);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nonsensical_flags_are_refused_naming_them() {
    for (flags, needle) in [
        (
            &["--write-timeout", "0"][..],
            "write_timeout (--write-timeout) must be more than 0",
        ),
        (
            &["--max-in-flight", "5000000000"][..],
            "max_in_flight (--max-in-flight) is at most 4294967295 bytes",
        ),
        (
            &["--loops", "0"][..],
            "loops (--loops) must be from 1 to 1024 (leave it out for one per core)",
        ),
        (
            &["--ping-interval", "60", "--idle-timeout", "30"][..],
            "ping_interval (--ping-interval, 60s) must be shorter than idle_timeout (--idle-timeout, 30s)",
        ),
    ] {
        let out = wshost().arg("serve").args(flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(needle), "{flags:?}: {stderr}");
    }
}

#[test]
fn a_bad_file_is_refused_naming_the_line_and_key() {
    let dir = tempdir("config-bad");
    let cases = [
        ("[limits]\nguest_memroy = 1\n", ["line 2", "guest_memroy"]),
        (
            "[[route]]\npath = \"/x\"\ncomponent = 7\n",
            ["line 3", "component"],
        ),
        (
            "[[route]]\npath = \"/x\"\ncomponent = \"mirror.wasm\"\nworld = \"events\"\n",
            ["says world events", "world handler"],
        ),
        (
            "[limits]\nwrite_timeout = 0\n",
            [
                "write_timeout (--write-timeout) must be more than 0",
                "[limits]",
            ],
        ),
        (
            "[limits]\nping_interval = 30\nidle_timeout = 30\n",
            [
                "ping_interval (--ping-interval, 30s) must be shorter than idle_timeout",
                "[limits]",
            ],
        ),
        (
            "[[route]]\npath = \"/x\"\ncomponent = \"mirror.wasm\"\nlimits = { idle_timeout = 10 }\n",
            [
                "[[route]] /x",
                "must be shorter than idle_timeout (--idle-timeout, 10s)",
            ],
        ),
        (
            "[[route]]\npath = \"/x\"\ncomponent = \"mirror.wasm\"\ndirs = [{ host = \"no-such-dir\", guest = \"/data\" }]\n",
            [
                "[[route]] /x",
                "no-such-dir (granted as /data) is not a directory",
            ],
        ),
        (
            "[limits]\nhub_queue = 0\n",
            ["hub_queue (--hub-queue) must be at least 1", "[limits]"],
        ),
        (
            "[limits]\nmax_connections = 3000000000000000000\n",
            [
                "max_connections (--max-connections) must be at most",
                "[limits]",
            ],
        ),
        (
            "[limits]\nguest_memory = 18446744073709551615\n",
            ["guest_memory (--guest-memory) must be at most", "[limits]"],
        ),
        (
            "[[route]]\npath = \"/x\"\ncomponent = \"mirror.wasm\"\nlimits = { max_connections = 5 }\n",
            ["[[route]] /x", "limits.max_connections is the server's"],
        ),
        ("[tls]\ncert = \"c.pem\"\n", ["missing field `key`", "tls"]),
        (
            "[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"lb\"]\n",
            [
                "trusted_proxies (--trusted-proxy)",
                "\"lb\" is not an address",
            ],
        ),
        (
            "[[route]]\npath = \"/x\"\ncomponent = \"mirror.wasm\"\nlimits = { trusted_proxies = [\"::1\"] }\n",
            ["[[route]] /x", "limits.trusted_proxies is the server's"],
        ),
    ];
    for (text, needles) in cases {
        let path = write_config(&dir, text);
        for command in [&["serve", "--config"][..], &["check", "--config"][..]] {
            let out = wshost().args(command).arg(&path).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
            for needle in needles {
                assert!(stderr.contains(needle), "{text:?}: {stderr}");
            }
            assert!(
                stderr.contains("wshost.toml") || needles[0].contains("world"),
                "{stderr}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
