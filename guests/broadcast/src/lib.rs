//! The seed's second example: each message `X` is pushed as `Сервер：X` to
//! every live connection of the route. The host's hub keeps the list of
//! connections (the seed's global `$wsObjects` array): a connection leaves it
//! when it ends, so nothing here has to remove itself.

use wshost_guest::{Connection, Error, Request, hub};

fn broadcast(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade()?;
    loop {
        let frame = match ws.recv(None) {
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
    ws.close();
    Ok(())
}

wshost_guest::export_handler!(broadcast);
