//! A test guest that pushes 64 KiB binary messages to its client as fast as
//! `push` lets it, until the push fails (the client has gone). `push` waits
//! for the socket, so a client that does not read holds the guest still.

use wshost_guest::{Connection, Error, Request};

fn flood(_req: Request, ws: Connection) -> Result<(), Error> {
    ws.upgrade()?;
    let chunk = vec![0x5A; 64 << 10];
    let mut sent: u64 = 0;
    while ws.push_binary(&chunk).is_ok() {
        sent += 1;
    }
    println!("flood ended after {sent} messages");
    Ok(())
}

wshost_guest::export_handler!(flood);
