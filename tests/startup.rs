//! `wshost serve` start-up: the built-in demo, and errors that name the file
//! and the problem.

mod support;

use std::time::Instant;
use support::*;

/// Run `wshost serve ARGS` expecting it to refuse to start; returns stderr.
fn refused(args: &[&str], code: i32) -> String {
    let out = wshost()
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    stderr
}

#[test]
fn a_file_that_is_not_wasm_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("wshost-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("notes.wasm");
    std::fs::write(&file, "hello, I am text").unwrap();
    let stderr = refused(&["--route", &format!("/ws={}", file.display())], 1);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("not a WebAssembly file"), "{stderr}");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let dir = std::env::temp_dir().join(format!("wshost-core-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("core.wasm");
    std::fs::write(&file, b"\0asm\x01\0\0\0").unwrap();
    let stderr = refused(&["--route", &format!("/ws={}", file.display())], 1);
    assert!(
        stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let file = guest("not-a-handler");
    let stderr = refused(&["--route", &format!("/ws={}", file.display())], 1);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("does not export `handle`"), "{stderr}");
    assert!(stderr.contains("wasi:cli/run"), "{stderr}");
}

#[test]
fn a_missing_file_is_refused_by_name() {
    let stderr = refused(&["--route", "/ws=/no/such/echo.wasm"], 1);
    assert!(
        stderr.contains("/no/such/echo.wasm: cannot read component file"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_route_is_a_usage_error() {
    let stderr = refused(&["--route", "websocket"], 2);
    assert!(stderr.contains("expected PATH=FILE.wasm"), "{stderr}");
    let stderr = refused(&["--route", "ws=echo.wasm"], 2);
    assert!(stderr.contains("must start with '/'"), "{stderr}");
}

#[test]
fn a_trusted_proxy_that_is_no_address_is_refused_by_name() {
    let echo = format!("/ws={}", guest("echo").display());
    let stderr = refused(&["--route", &echo, "--trusted-proxy", "lb.internal"], 1);
    assert!(stderr.contains("--trusted-proxy"), "{stderr}");
    assert!(
        stderr.contains("\"lb.internal\" is not an address or network"),
        "{stderr}"
    );
}

#[test]
fn the_same_route_twice_is_refused() {
    let echo = format!("/ws={}", guest("echo").display());
    let stderr = refused(&["--route", &echo, "--route", &echo], 1);
    assert!(stderr.contains("route /ws is given twice"), "{stderr}");
}

#[tokio::test]
async fn with_no_routes_the_built_in_demo_is_served() {
    let started = Instant::now();
    let server = Server::start_with(&[]);
    let listening = started.elapsed();
    let mut ws = server.connect("/websocket").await;
    let accepted = started.elapsed();
    eprintln!("demo: listening after {listening:?}, first connection upgraded after {accepted:?}");
    send_text(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws).await, "Привет, hello!");
    assert!(
        server
            .get("/")
            .await
            .contains("<h1>Сервер WebSocket Swoole</h1>")
    );
}

#[test]
fn check_reports_a_handler_and_refuses_what_is_not_one() {
    let out = wshost()
        .arg("check")
        .arg(guest("mirror"))
        .arg(guest("chat"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("mirror.wasm: a wshost handler; world handler;"),
        "{stdout}"
    );
    assert!(
        stdout.contains("chat.wasm: a wshost handler; world events;"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("instantiates in").count(), 2, "{stdout}");
    let out = wshost()
        .arg("check")
        .arg(guest("not-a-handler"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not export `handle`"), "{stderr}");
}

/// Start `wshost serve` on the echo guest with `XDG_CACHE_HOME=xdg` and
/// `flags`; returns once it listens (killing it) or panics with its stderr.
fn serve_once(xdg: &std::path::Path, flags: &[&str]) {
    use std::io::BufRead;
    let mut child = wshost()
        .args(["serve", "--listen", "127.0.0.1:0", "--route"])
        .arg(format!("/ws={}", guest("echo").display()))
        .args(flags)
        .env("XDG_CACHE_HOME", xdg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        line.contains("listening"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bytes of the compiled code under `dir`, recursively (0 when it does not
/// exist). Not the `.stats` files: wasmtime's cache worker updates those
/// (usage counts) in the background, also after a hit, so their size says
/// nothing about compiling.
fn bytes_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ if e.path().extension().is_some_and(|x| x == "stats") => 0,
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[test]
fn compiled_components_are_kept_in_the_cache_dir_unless_told_not_to() {
    let xdg = std::env::temp_dir().join(format!("wshost-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&xdg);
    std::fs::create_dir_all(&xdg).unwrap();

    serve_once(&xdg, &["--no-cache"]);
    assert!(!xdg.join("wshost").exists(), "--no-cache wrote a cache");

    // The default: $XDG_CACHE_HOME/wshost holds the compiled echo guest
    // (larger than the component itself).
    serve_once(&xdg, &[]);
    let cached = bytes_under(&xdg.join("wshost"));
    let component = std::fs::metadata(guest("echo")).unwrap().len();
    assert!(cached > component, "{cached} bytes cached");

    // A restart loads it: nothing new is written.
    serve_once(&xdg, &[]);
    assert_eq!(bytes_under(&xdg.join("wshost")), cached);
    let explicit = xdg.join("elsewhere");
    serve_once(&xdg, &["--cache-dir", explicit.to_str().unwrap()]);
    assert!(bytes_under(&explicit) > component);
    let _ = std::fs::remove_dir_all(&xdg);
}

/// An event-world socket holds no instance: a server of event routes only
/// reserves instance slots per route, not per connection, so a connection
/// limit no handler-world pool could reserve (a million slots of 128 MiB is
/// more address space than x86-64 has) starts at once and serves.
#[tokio::test]
async fn an_event_only_server_reserves_no_instance_per_connection() {
    let server = Server::start_flagged(&["--max-connections", "1000000"], &[("/chat", "chat")]);
    let mut ws = server.connect("/chat").await;
    send_text(&mut ws, "x").await;
    assert_eq!(next_text(&mut ws).await, "Сервер：x");
    // The same limit with a handler-world route needs a slot per connection.
    let stderr = refused(
        &[
            "--max-connections",
            "1000000",
            "--route",
            &format!("/echo={}", guest("echo").display()),
        ],
        1,
    );
    assert!(
        stderr.contains("reserving room for 1000000 instances"),
        "{stderr}"
    );
}

/// The review's minor: the compile cache holds native code wasmtime runs,
/// and was trusted whoever could write to it. A cache directory writable
/// by others is refused, naming it (a new one is made 0700).
#[test]
fn a_compile_cache_others_may_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("cache-open");
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let echo = format!("/echo={}", guest("echo").display());
    let out = wshost()
        .args(["serve", "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(&open)
        .args(["--route", &echo])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writable by no one else"), "{stderr}");
    assert!(stderr.contains(&open.display().to_string()), "{stderr}");

    let _ = std::fs::remove_dir_all(&dir);
}

/// The first hour (issue 28): `wshost check` leaves what it compiled in the
/// compile cache `serve` reads (`$XDG_CACHE_HOME/wshost`), so a `serve`
/// after it loads a JavaScript component at once instead of compiling it
/// again; and a large component's start says what it is doing.
#[test]
fn check_fills_the_cache_serve_reads_and_a_large_start_is_logged() {
    let home = tempdir("check-fills-cache");
    let js = Lang::Js.guest("echo");
    let stdout = stdout_of_success(wshost().arg("check").arg(&js).env("XDG_CACHE_HOME", &home));
    let cache = home.join("wshost");
    assert!(
        stdout.contains(&format!(
            "compiled code kept in {} for `serve`",
            cache.display()
        )),
        "{stdout}"
    );
    let compiled: u64 = stdout
        .split("compiled in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));

    let route = format!("/={}", js.display());
    let mut serve = wshost()
        .args(["serve", "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(&cache)
        .args(["--route", &route])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The address is printed once the routes are loaded.
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(serve.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    serve.kill().unwrap();
    let out = serve.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("compiling it to native code takes seconds the first time"),
        "{log}"
    );
    let ready: u64 = log
        .split("ready in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        ready * 4 < compiled,
        "loaded in {ready} ms, compiled in {compiled} ms"
    );
    let _ = std::fs::remove_dir_all(&home);
}
