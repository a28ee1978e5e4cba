//! The admin listener (`--admin`): where it is, what it answers, and the
//! samples of its Prometheus text.

use super::{Server, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The admin address the server logged.
pub async fn admin_addr(server: &Server) -> String {
    server.wait_for_log("admin listening on http://").await;
    let log = server.log();
    let rest = log.split("admin listening on http://").nth(1).unwrap();
    rest.split_whitespace().next().unwrap().to_string()
}

/// `GET path` on the admin listener: status and body.
pub async fn admin_get(addr: &str, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("the admin listener answered")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// The value of the sample `series` (name and labels as Prometheus prints
/// them) in `metrics`; 0 when absent.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Wait until the admin listener at `addr` reports `series` at `value`.
pub async fn wait_for_sample(addr: &str, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = admin_get(addr, "/metrics").await;
        if sample(&metrics, series) == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never {value}:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
