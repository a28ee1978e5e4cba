//! Sends every message back unchanged, as a coroutine (text stays text,
//! binary stays binary): `mirror` in the coro world, for the benchmarks.

use wshost_guest::coro::Connection;
use wshost_guest::{Error, Request};

async fn mirror(req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade_with(req.protocols().next(), &[]).await?;
    drop(req);
    while let Some(frame) = ws.recv(None).await? {
        if frame.is_close() {
            break;
        }
        ws.push(&frame.data, frame.opcode, true).await?;
    }
    Ok(())
}

wshost_guest::export_coro!(mirror);
