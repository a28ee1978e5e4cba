//! Sends every message back unchanged: text stays text, binary stays binary.
//! Used by the protocol tests and the benchmarks.

use wshost_guest::{Connection, Error, Request};

fn mirror(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade()?;
    while let Some(frame) = ws.recv(None)? {
        if frame.is_close() {
            // The host has answered the Close frame; returning ends the connection.
            break;
        }
        ws.push(&frame.data, frame.opcode, true)?;
    }
    Ok(())
}

wshost_guest::export_handler!(mirror);
