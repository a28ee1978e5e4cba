//! The seed's first example as a coroutine: `Привет, X!` then `Как ты там,
//! X?` for every message; the text `close` or a Close frame ends it without
//! a Close frame. The same straight-line code as `echo`, each call
//! `.await`ed: thousands of connections are tasks of one instance.

use wshost_guest::coro::Connection;
use wshost_guest::{Error, Request};

async fn echo(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade().await?;
    // A waiting task keeps what it holds: let the request go.
    drop(req);
    loop {
        let frame = match ws.recv(None).await {
            Ok(Some(frame)) => frame,
            // The peer has gone (the seed's `''`).
            Ok(None) => break,
            // The seed's `false`: log the error and drop the connection.
            Err(e) => {
                eprintln!("errorCode: {e}");
                break;
            }
        };
        if frame.is_close() || frame.text() == Some("close") {
            break;
        }
        let data = frame.text_lossy();
        ws.push_text(&format!("Привет, {data}!")).await?;
        ws.push_text(&format!("Как ты там, {data}?")).await?;
    }
    ws.close().await;
    Ok(())
}

wshost_guest::export_coro!(echo);
