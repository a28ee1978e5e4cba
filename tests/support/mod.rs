//! Shared by the end-to-end tests: start the real `wshost` binary on a free
//! port, connect real WebSocket clients, speak raw HTTP.
#![allow(dead_code)]

pub mod admin;
pub mod clients;
pub mod raw;
pub mod redis;
pub mod webdriver;

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single wait in a test may take before it counts as a hang.
pub const WAIT: Duration = Duration::from_secs(10);

/// A guest component built by host/build.rs.
pub fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("WSHOST_GUEST_DIR")).join(format!("{name}.wasm"))
}

/// The languages the example guests (`echo`, `broadcast`) are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// `guests/<name>/`, built by host/build.rs.
    Rust,
    /// `guests/js/<name>.js`, built by `guests/js/build.sh`.
    Js,
    /// `guests/python/<name>.py`, built by `guests/python/build.sh`.
    Python,
    /// `guests/c/<name>.c`, built by `guests/c/build.sh`.
    C,
    /// The coro world in Rust: `guests/coro-<name>/`.
    RustCoro,
    /// The coro world in Python: `guests/python/coro_<name>.py`.
    PythonCoro,
}

impl Lang {
    /// The component of example guest `name` in this language.
    pub fn guest(self, name: &str) -> PathBuf {
        match self {
            Lang::Rust => guest(name),
            Lang::Js => built_by_script("js", name),
            Lang::Python => built_by_script("python", name),
            Lang::C => built_by_script("c", name),
            Lang::RustCoro => guest(&format!("coro_{name}")),
            Lang::PythonCoro => built_by_script("python", &format!("coro_{name}")),
        }
    }

    /// The seed's broadcast in this language's worlds: the handler world's
    /// `broadcast` and the event world's `chat`; a coroutine `broadcast`.
    pub fn broadcasts(self) -> &'static [&'static str] {
        match self {
            Lang::RustCoro | Lang::PythonCoro => &["broadcast"],
            _ => &["broadcast", "chat"],
        }
    }
}

/// `guests/<dir>/build.sh` run once per test process (it installs its
/// toolchain when missing and skips what is up to date), then its `name`.
fn built_by_script(dir: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Beside the Rust guests: target/guests/<dir>/.
    let out = Path::new(env!("WSHOST_GUEST_DIR")).join("../..").join(dir);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|d| d == dir) {
        let script = root.join("guests").join(dir).join("build.sh");
        let run = Command::new(&script)
            .arg(&out)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            run.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        // Fill the compile cache once, before parallel tests all compile.
        for entry in std::fs::read_dir(&out).unwrap().flatten() {
            let wasm = entry.path();
            if wasm.extension().is_some_and(|e| e == "wasm") {
                let route = format!("/={}", wasm.display());
                drop(Server::start_with(&["--route".into(), route]));
            }
        }
        built.push(dir.to_string());
    }
    out.join(format!("{name}.wasm"))
}

/// Define `#[tokio::test] fn <lang>::<test>()` for every language, each
/// calling the test function `<test>(Lang)` of the same name.
#[allow(unused_macros)]
macro_rules! in_every_language {
    ($($test:ident),* $(,)?) => {
        in_every_language!(@one rust, Rust, $($test),*);
        in_every_language!(@one js, Js, $($test),*);
        in_every_language!(@one python, Python, $($test),*);
        in_every_language!(@one c, C, $($test),*);
        in_every_language!(@one rust_coro, RustCoro, $($test),*);
        in_every_language!(@one python_coro, PythonCoro, $($test),*);
    };
    (@one $module:ident, $lang:ident, $($test:ident),*) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::support::Lang::$lang).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use in_every_language;

pub fn wshost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wshost"))
}

/// A running `wshost serve`, killed on drop.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Serve `routes` (path, guest name) on a free port.
    pub fn start(routes: &[(&str, &str)]) -> Server {
        Server::start_flagged(&[], routes)
    }

    /// Serve `routes` with extra `serve` flags, e.g. `["--max-connections", "2"]`.
    pub fn start_flagged(flags: &[&str], routes: &[(&str, &str)]) -> Server {
        let mut args: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        args.extend(route_args(routes));
        Server::start_with(&args)
    }

    /// Serve example guest `name` in `lang` at `path`.
    pub fn start_in(lang: Lang, path: &str, name: &str) -> Server {
        Server::start_with(&[
            "--route".into(),
            format!("{path}={}", lang.guest(name).display()),
        ])
    }

    /// `wshost serve --listen 127.0.0.1:0 ARGS...`, once it says it listens.
    pub fn start_with(args: &[String]) -> Server {
        Server::start_command(wshost(), args)
    }

    /// [`Server::start_with`], run as `command` (wshost, or a shell that
    /// execs it) says.
    pub fn start_command(mut command: Command, args: &[String]) -> Server {
        // One compile cache for all tests: a Python or JS guest compiles once.
        let cache = Path::new(env!("WSHOST_GUEST_DIR")).join("../../compile-cache");
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .env("RUST_LOG", "info,wshost=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wshost");
        let log = Arc::new(Mutex::new(String::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout
            .read_line(&mut first)
            .expect("reading wshost's stdout");
        let addr = first
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "wshost did not say where it listens: {first:?}; log:\n{}",
                    log.lock().unwrap()
                )
            });
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        Server { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send the server a signal, e.g. `"TERM"`.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Wait up to `within` for the server to exit; its exit status.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wshost still running after {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Open a WebSocket to `path`.
    pub async fn connect(&self, path: &str) -> Client {
        let (ws, response) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(self.url(path)))
                .await
                .expect("handshake timed out")
                .unwrap_or_else(|e| panic!("connecting to {path}: {e}"));
        assert_eq!(response.status(), 101);
        ws
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        self.wait_for_logs(needle, 1).await
    }

    /// Wait until the log has said `needle` `times` times.
    pub async fn wait_for_logs(&self, needle: &str, times: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.log().matches(needle).count() < times {
            assert!(
                tokio::time::Instant::now() < deadline,
                "log never said {needle:?} {times} times:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send `request` as raw bytes; return the whole response the server sends
    /// before closing.
    pub async fn raw(&self, request: &[u8]) -> String {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        read_until_closed(&mut tcp, WAIT).await
    }

    /// Send a handshake `request` as raw bytes; return the response head
    /// (the connection stays open after a 101, so not read to its end).
    pub async fn raw_upgrade(&self, request: &str) -> String {
        let mut tcp = TcpStream::connect(self.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(WAIT, tcp.read(&mut byte))
                .await
                .expect("no response head within the wait")
                .unwrap();
            if n == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    }

    /// `GET path` over plain HTTP/1.1.
    pub async fn get(&self, path: &str) -> String {
        self.raw(format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr).as_bytes())
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `command`, which must succeed; its stdout.
pub fn stdout_of_success(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `--route PATH=GUEST.wasm` for each (path, guest name).
pub fn route_args(routes: &[(&str, &str)]) -> Vec<String> {
    routes
        .iter()
        .flat_map(|(path, name)| {
            [
                "--route".into(),
                format!("{path}={}", guest(name).display()),
            ]
        })
        .collect()
}

/// A fresh, empty directory for this test process.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wshost-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A TCP connection to `server` from source address 127.0.0.`host` (so the
/// server can tell clients apart by address).
pub async fn tcp_from(server: &Server, host: u8) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let source = SocketAddr::new(std::net::Ipv4Addr::new(127, 0, 0, host).into(), 0);
    socket.bind(source).unwrap();
    socket.connect(server.addr).await.unwrap()
}

/// What the server sends until it closes (or resets) the connection; panics
/// if that takes longer than `within`.
pub async fn read_until_closed(
    tcp: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> String {
    let mut response = Vec::new();
    // On a reset, what arrived before it is kept in `response`.
    let _ = tokio::time::timeout(within, tcp.read_to_end(&mut response))
        .await
        .expect("the server kept the connection open");
    String::from_utf8_lossy(&response).into_owned()
}

/// The next message, skipping nothing; panics on a hang.
pub async fn next(
    ws: &mut Client,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no message within the wait")
}

/// The next message, which must be text.
pub async fn next_text(ws: &mut Client) -> String {
    match next(ws).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

pub async fn send_text(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.expect("sending");
}

/// Read until the connection ends; returns the Close frame's code if one came.
pub async fn close_code(ws: &mut Client) -> Option<u16> {
    close_frame(ws).await.map(|(code, _)| code)
}

/// Read until the connection ends; returns the Close frame's code and reason if one came.
pub async fn close_frame(ws: &mut Client) -> Option<(u16, String)> {
    let mut close = None;
    loop {
        match next(ws).await {
            Some(Ok(Message::Close(frame))) => {
                close = frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return close,
        }
    }
}

/// A connection to the `echo` guest that has been greeted once.
pub async fn healthy_echo(server: &Server, path: &str) -> Client {
    let mut ws = server.connect(path).await;
    assert_still_answers(&mut ws).await;
    ws
}

/// The echo guest behind `ws` still greets a message promptly.
pub async fn assert_still_answers(ws: &mut Client) {
    send_text(ws, "still here").await;
    assert_eq!(next_text(ws).await, "Привет, still here!");
    assert_eq!(next_text(ws).await, "Как ты там, still here?");
}

/// Resident set size of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

/// Open file descriptors of process `pid`.
pub fn fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Read a whole file's bytes, for fixtures.
pub fn read(path: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Raise this process's open-file limit to its hard limit (the servers it
/// starts inherit it): a thousand sockets need more than the usual 1,024.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A WebSocket client whose socket has a tiny receive buffer and that never
/// reads, so the server's writes to it stall quickly.
pub async fn non_reader(server: &Server, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let (ws, response) = tokio_tungstenite::client_async(
        server.url(path),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    ws
}
