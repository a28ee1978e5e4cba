//! Sends every message back unchanged: text stays text, binary stays binary.
//! Picks the client's first offered subprotocol, so any client library can
//! be tried against it. Used by the protocol tests and the benchmarks.

use wshost_guest::{Connection, Error, Request};

fn mirror(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade_with(req.protocols().next(), &[])?;
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
