//! The seed's broadcast as a coroutine through a topic, as the event
//! world's `chat` does it: each connection subscribes to `chat`, and each
//! message `X` is published there as `Сервер：X` (framed once, queued to
//! every subscriber). The benchmark's coro-world broadcast.

use wshost_guest::coro::Connection;
use wshost_guest::{Error, Request, topics};

async fn chat(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade().await?;
    drop(req);
    ws.subscribe("chat")?;
    while let Some(frame) = ws.recv(None).await? {
        if frame.is_close() || frame.text() == Some("close") {
            break;
        }
        topics::publish("chat", format!("Сервер：{}", frame.text_lossy()))?;
    }
    ws.close().await;
    Ok(())
}

wshost_guest::export_coro!(chat);
