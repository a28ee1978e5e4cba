//! `wss://` and `https://`: TLS with a certificate chain read from PEM files
//! and read again when they change. Clients: tokio-tungstenite over
//! tokio-rustls (trusting only the test's own CA), Python `websockets` and
//! Node `ws` (through their usual CA settings).

mod support;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::clients::run_client;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A certificate for `localhost` and `127.0.0.1` signed by a CA of its own,
/// written into `dir` as `chain.pem` (leaf, then CA: a chain), `key.pem`,
/// and `ca.pem` (what a client trusts).
struct Issued {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    chain_pem: String,
    key_pem: String,
}

fn issue(name: &str) -> Issued {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("wshost test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let leaf = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Issued {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}

impl Issued {
    /// Write the chain and key where the server reads them (each replaced
    /// at once, as a renewal tool does), and the CA beside them.
    fn install(&self, dir: &Path) {
        let put = |name: &str, text: &str| {
            let staged = dir.join(format!("{name}.new"));
            std::fs::write(&staged, text).unwrap();
            std::fs::rename(&staged, dir.join(name)).unwrap();
        };
        put("key.pem", &self.key_pem);
        put("chain.pem", &self.chain_pem);
        put("ca.pem", &pem("CERTIFICATE", &self.ca));
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use data_encoding::BASE64;
    let body = BASE64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// `wshost serve` with TLS from `dir`'s chain.pem and key.pem.
fn tls_server(dir: &Path, flags: &[&str], routes: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "--tls-cert".to_string(),
        dir.join("chain.pem").display().to_string(),
        "--tls-key".to_string(),
        dir.join("key.pem").display().to_string(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    for (path, name) in routes {
        args.push("--route".into());
        args.push(format!("{path}={}", guest(name).display()));
    }
    Server::start_with(&args)
}

/// A TLS connection to the server trusting only `roots`; the certificate
/// the server presented.
async fn tls_connect(
    server: &Server,
    roots: &[&CertificateDer<'static>],
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    tls_connect_after(server, roots, &[]).await
}

/// A TLS connection as [`tls_connect`], with `before` sent ahead of the
/// TLS handshake (as a balancer sends its PROXY header).
async fn tls_connect_after(
    server: &Server,
    roots: &[&CertificateDer<'static>],
    before: &[u8],
) -> (TlsStream<TcpStream>, CertificateDer<'static>) {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(before).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("TLS handshake timed out")
    .expect("TLS handshake");
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, presented)
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

async fn wss(
    server: &Server,
    path: &str,
    roots: &[&CertificateDer<'static>],
) -> (Wss, CertificateDer<'static>) {
    let (tls, presented) = tls_connect(server, roots).await;
    let url = format!("wss://localhost:{}{path}", server.addr.port());
    let (ws, response) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(response.status(), 101);
    (ws, presented)
}

async fn echo_round(ws: &mut Wss, text: &str) -> (String, String) {
    ws.send(Message::text(text)).await.unwrap();
    let mut next = async || match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    };
    (next().await, next().await)
}

#[tokio::test]
async fn wss_echo_and_https_page_with_a_certificate_chain() {
    let dir = tempdir("tls-chain");
    let issued = issue("chain");
    issued.install(&dir);
    let server = tls_server(&dir, &[], &[("/websocket", "echo"), ("/", "page")]);

    // The client trusts the CA only: the server must send the whole chain.
    let (mut ws, presented) = wss(&server, "/websocket", &[&issued.ca]).await;
    assert_eq!(presented, issued.leaf);
    let (hello, how) = echo_round(&mut ws, "tls").await;
    assert_eq!(
        (hello.as_str(), how.as_str()),
        ("Привет, tls!", "Как ты там, tls?")
    );
    // Large messages cross many TLS records both ways.
    let big = "ж".repeat(200_000);
    let (hello, _) = echo_round(&mut ws, &big).await;
    assert_eq!(hello, format!("Привет, {big}!"));

    // Plain HTTP over TLS: the page.
    let (mut tls, _) = tls_connect(&server, &[&issued.ca]).await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let page = read_until_closed(&mut tls, WAIT).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<h1>Сервер WebSocket Swoole</h1>"), "{page}");

    // A plain-text request on the TLS port fails its handshake and costs
    // nothing else; a client that sends nothing is dropped after the
    // handshake timeout.
    let reply = server.get("/").await;
    assert!(!reply.contains("200 OK"), "{reply}");
    let (hello, _) = echo_round(&mut ws, "still").await;
    assert_eq!(hello, "Привет, still!");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Behind a layer-4 balancer that passes TLS through, the PROXY header is
/// the only way to learn the client: it comes before the TLS handshake.
#[tokio::test]
async fn a_proxy_header_ahead_of_tls_names_the_client() {
    let dir = tempdir("tls-proxied");
    let issued = issue("proxied");
    issued.install(&dir);
    let flags = ["--trusted-proxy", "127.0.0.1", "--proxy-protocol"];
    let server = tls_server(&dir, &flags, &[("/p", "probe")]);
    // v2, TCP over IPv4, from 203.0.113.9:4711 (as AWS NLB sends it).
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\x0c".to_vec();
    header.extend_from_slice(&[203, 0, 113, 9, 127, 0, 0, 1]);
    header.extend_from_slice(&[0x12, 0x67, 0x01, 0xbb]); // ports 4711, 443
    let (mut tls, _) = tls_connect_after(&server, &[&issued.ca], &header).await;
    tls.write_all(b"GET /p?peer HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut tls, WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n203.0.113.9:4711"), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_and_node_ws_over_wss_with_deflate() {
    let dir = tempdir("tls-clients");
    let issued = issue("clients");
    issued.install(&dir);
    let server = tls_server(
        &dir,
        &["--deflate"],
        &[("/mirror", "mirror"), ("/events", "event_mirror")],
    );
    let ca = dir.join("ca.pem");
    for path in ["/mirror", "/events"] {
        let url = format!("wss://localhost:{}{path}", server.addr.port());
        let (python_url, python_ca) = (url.clone(), ca.clone());
        let python = tokio::task::spawn_blocking(move || {
            // Python's ssl module reads the CA file from SSL_CERT_FILE.
            let env = [("SSL_CERT_FILE", python_ca.as_path())];
            run_client(".venv/bin/python", "deflate.py", &python_url, &env)
        });
        let node_ca = ca.clone();
        let node = tokio::task::spawn_blocking(move || {
            let env = [("NODE_EXTRA_CA_CERTS", node_ca.as_path())];
            run_client("node", "deflate.mjs", &url, &env)
        });
        for out in [python.await.unwrap(), node.await.unwrap()] {
            assert!(out.contains("permessage-deflate"), "{path}: {out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where the server logs it reloaded its certificate, counted.
fn reloads(server: &Server) -> usize {
    server.log().matches("TLS certificate reloaded").count()
}

async fn wait_until(what: &str, server: &Server, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempdir("tls-renew");
    let (first, second) = (issue("first"), issue("second"));
    first.install(&dir);
    // Served from a config file's [tls], paths relative to the file.
    let config = dir.join("wshost.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"chain.pem\"\nkey = \"key.pem\"\n\n[[route]]\npath = \"/ws\"\ncomponent = \"{}\"\n",
            guest("echo").display()
        ),
    )
    .unwrap();
    let server = Server::start_with(&["--config".into(), config.display().to_string()]);
    let both = [&first.ca, &second.ca];
    let (mut open, presented) = wss(&server, "/ws", &both).await;
    assert_eq!(presented, first.leaf);

    // A half-written renewal (not PEM) keeps the current certificate.
    std::fs::write(
        dir.join("chain.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64",
    )
    .unwrap();
    server.wait_for_log("TLS certificate not reloaded").await;
    let (_, presented) = wss(&server, "/ws", &both).await;
    assert_eq!(presented, first.leaf, "the old certificate stays");

    // The renewal lands: new handshakes get it, open sockets go on.
    let before = reloads(&server);
    second.install(&dir);
    wait_until("the new certificate loaded", &server, || {
        reloads(&server) > before
    })
    .await;
    let (mut renewed, presented) = wss(&server, "/ws", &both).await;
    assert_eq!(presented, second.leaf);
    assert_eq!(echo_round(&mut renewed, "new").await.0, "Привет, new!");
    assert_eq!(echo_round(&mut open, "old").await.0, "Привет, old!");

    // A renewal that keeps the files' modification times (`cp -p`) is seen
    // too: the files are compared by what they hold.
    let third = issue("third");
    let times: Vec<_> = ["chain.pem", "key.pem"]
        .iter()
        .map(|name| {
            std::fs::metadata(dir.join(name))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let before = reloads(&server);
    third.install(&dir);
    for (name, time) in ["chain.pem", "key.pem"].iter().zip(times) {
        let file = std::fs::File::options()
            .write(true)
            .open(dir.join(name))
            .unwrap();
        file.set_modified(time).unwrap();
    }
    wait_until("the same-time renewal loaded", &server, || {
        reloads(&server) > before
    })
    .await;
    let (_, presented) = wss(&server, "/ws", &[&first.ca, &second.ca, &third.ca]).await;
    assert_eq!(presented, third.leaf);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_tls_files_are_refused_naming_them() {
    let dir = tempdir("tls-bad");
    let (one, other) = (issue("one"), issue("other"));
    one.install(&dir);
    let serve = |cert: &Path, key: &Path| {
        let out = wshost()
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let chain: PathBuf = dir.join("chain.pem");
    let missing = dir.join("missing.pem");
    let err = serve(&chain, &missing);
    assert!(
        err.contains("missing.pem: not a PEM private key file"),
        "{err}"
    );
    let err = serve(&missing, &dir.join("key.pem"));
    assert!(
        err.contains("missing.pem: not a PEM certificate file"),
        "{err}"
    );
    // A key that is not the certificate's.
    let wrong = dir.join("wrong-key.pem");
    std::fs::write(&wrong, &other.key_pem).unwrap();
    let err = serve(&chain, &wrong);
    assert!(
        err.contains("do not make a usable certificate and key"),
        "{err}"
    );
    // One without the other.
    let out = wshost()
        .args(["serve", "--tls-cert"])
        .arg(&chain)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--tls-key"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
