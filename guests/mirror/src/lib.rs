//! Sends every message back unchanged: text stays text, binary stays binary.
//! Picks the client's first offered subprotocol, so any client library can
//! be tried against it. Used by the protocol tests and the benchmarks.
//!
//! Messages stay in the host (`recv_message`, `push_message`): an 8 MiB
//! message is never copied into this instance's memory, so the instance
//! does not keep 8 MiB for the rest of the connection.

use wshost_guest::messages::Incoming;
use wshost_guest::{Connection, Error, Request};

fn mirror(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade_with(req.protocols().next(), &[])?;
    // A Close frame: the host has answered it; returning ends the connection.
    while let Some(Incoming::Message(msg)) = ws.recv_message(None)? {
        ws.push_message(&msg)?;
    }
    Ok(())
}

wshost_guest::export_handler!(mirror);
