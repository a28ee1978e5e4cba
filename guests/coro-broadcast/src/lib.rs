//! The seed's second example as a coroutine: each message `X` is pushed as
//! `Сервер：X` to every live connection of the route (the host's hub keeps
//! the list, the seed's global `$wsObjects`).

use wshost_guest::coro::Connection;
use wshost_guest::{Error, Request, hub};

async fn broadcast(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade().await?;
    drop(req);
    loop {
        let frame = match ws.recv(None).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                eprintln!("errorCode: {e}");
                break;
            }
        };
        if frame.is_close() || frame.text() == Some("close") {
            break;
        }
        hub::broadcast_text(&format!("Сервер：{}", frame.text_lossy()))?;
    }
    ws.close().await;
    Ok(())
}

wshost_guest::export_coro!(broadcast);
