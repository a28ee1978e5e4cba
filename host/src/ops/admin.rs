//! The admin listener (`serve --admin ADDR`), apart from the public port:
//! `/metrics` (Prometheus text), `/healthz` (the process is alive) and
//! `/readyz` (routes loaded and not shutting down: it turns 503 as soon as
//! shutdown starts, so a load balancer drains the server first).
//!
//! Meant for a private network: at most [`MAX_OPEN`] requests are answered
//! at once (more are closed at once), each within 5 s, and a listener on an
//! address other than loopback is warned about at start.

use crate::net::http;
use crate::net::transport::Stream;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Gauges read from elsewhere just before each scrape (the wasm pool's).
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Admin requests answered at once; past it a connection is closed
/// unanswered (a scraper retries; a flood costs no memory).
pub const MAX_OPEN: usize = 32;

/// Serve admin requests on `listener` until the process ends;
/// `shutting_down` turns true when the server starts to shut down.
pub async fn serve(
    listener: TcpListener,
    (metrics, refresh): (PrometheusHandle, Refresh),
    shutting_down: Arc<AtomicBool>,
) {
    if let Ok(addr) = listener.local_addr()
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            "the admin listener is on {addr}, not loopback: /metrics tells anyone who reaches it the routes and their load"
        );
    }
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_OPEN));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            continue; // dropped: MAX_OPEN requests are being answered
        };
        let metrics = (metrics.clone(), refresh.clone());
        let answered = answer(stream, metrics, shutting_down.clone());
        tokio::spawn(async move {
            answered.await;
            drop(permit);
        });
    }
}

async fn answer(
    stream: TcpStream,
    (metrics, refresh): (PrometheusHandle, Refresh),
    shutting_down: Arc<AtomicBool>,
) {
    let timeout = Duration::from_secs(5);
    let mut stream = Stream::Plain(stream);
    let Ok((head, _)) = http::read_head(&mut stream, 8 << 10, timeout).await else {
        return;
    };
    let text = |status, body: String| {
        let headers = [(
            "content-type".to_string(),
            "text/plain; version=0.0.4; charset=utf-8".to_string(),
        )];
        http::response(status, &headers, body.as_bytes(), head.method == "HEAD")
    };
    let response = match head.path.as_str() {
        "/metrics" => {
            refresh();
            text(200, metrics.render())
        }
        "/healthz" => text(200, "ok\n".into()),
        "/readyz" if shutting_down.load(Ordering::Acquire) => text(503, "shutting down\n".into()),
        "/readyz" => text(200, "ready\n".into()),
        other => text(404, format!("no admin endpoint {other}\n")),
    };
    http::refuse(&mut stream, &response, timeout).await;
}
