//! The ceiling: a minimal native tokio-tungstenite server with the same
//! routes the benchmark loads on wshost. `/mirror` sends every message back
//! unchanged; `/broadcast` sends every message to every connection of the
//! route, through a queue per connection and a writer task each (the usual
//! design), prefixed like wshost's `broadcast` guest.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

type Members = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// What `/broadcast` puts before each message, as the seed's example and
/// wshost's `broadcast` and `chat` guests do.
pub const PREFIX: &str = "Сервер：";

pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let members: Members = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let (tcp, _) = listener.accept().await?;
        let members = members.clone();
        let id = ids.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let _ = connection(tcp, id, members).await;
        });
    }
}

// The callback's error type is tungstenite's, whatever its size.
#[allow(clippy::result_large_err)]
async fn connection(tcp: TcpStream, id: u64, members: Members) -> anyhow::Result<()> {
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    })
    .await?;
    if path == "/broadcast" {
        broadcast(ws, id, members).await
    } else {
        mirror(ws).await
    }
}

async fn mirror(mut ws: tokio_tungstenite::WebSocketStream<TcpStream>) -> anyhow::Result<()> {
    while let Some(msg) = ws.next().await {
        match msg? {
            msg @ (Message::Text(_) | Message::Binary(_)) => ws.send(msg).await?,
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    id: u64,
    members: Members,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    // Unbounded: the baseline neither drops nor evicts (wshost evicts a
    // member 1,024 messages behind, `--hub-queue`). A bounded queue of 1,024
    // with `try_send` dropped messages in `--quick`'s bursts of 4,000 to a
    // room of 50, whose writers (a flushed `send` a message) fell that far
    // behind, and the load failed.
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    members.lock().unwrap().insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let out = Message::text(format!("{PREFIX}{text}"));
        for member in members.lock().unwrap().values() {
            let _ = member.send(out.clone());
        }
    }
    members.lock().unwrap().remove(&id);
    writer.abort();
    Ok(())
}
