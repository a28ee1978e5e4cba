//! A test guest that never returns to the host: after upgrading (or before,
//! with the query `before`) it loops without calling any import. The host
//! must interrupt it and keep serving everyone else.

use wshost_guest::{Connection, Error, Request};

fn spin(req: Request, ws: Connection) -> Result<(), Error> {
    if req.query != "before" {
        ws.upgrade()?;
    }
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

wshost_guest::export_handler!(spin);
