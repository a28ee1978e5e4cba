//! A test guest that upgrades (or not, with the query `before`), then grows
//! its memory without end, touching every page so nothing is optimised away.
//! The host must refuse the growth at its per-instance cap.

use wshost_guest::{Connection, Error, Request};

fn bomb(req: Request, ws: Connection) -> Result<(), Error> {
    if req.query != "before" {
        ws.upgrade()?;
    }
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

wshost_guest::export_handler!(bomb);
