//! The seed's first example: `Привет, X!` then `Как ты там, X?` for every
//! message; the text `close` or a Close frame ends it without a Close frame.

use wshost_guest::{Connection, Error, Request};

fn echo(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade()?;
    loop {
        let frame = match ws.recv(None) {
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
        ws.push_text(&format!("Привет, {data}!"))?;
        ws.push_text(&format!("Как ты там, {data}?"))?;
    }
    ws.close();
    Ok(())
}

wshost_guest::export_handler!(echo);
