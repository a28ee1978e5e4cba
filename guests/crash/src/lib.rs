//! A test guest that fails the hard way. The query picks how, and whether
//! before or after upgrading: `panic`, `trap` (an `unreachable` instruction),
//! `overflow` (unbounded recursion), each optionally followed by `&before`.

use wshost_guest::{Connection, Error, Request};

fn crash(req: Request, ws: Connection) -> Result<(), Error> {
    let (how, when) = req
        .query
        .split_once('&')
        .unwrap_or((req.query.as_str(), "after"));
    if when != "before" {
        ws.upgrade()?;
    }
    match how {
        "panic" => panic!("crashing on purpose"),
        "trap" => std::process::abort(),
        "overflow" => {
            std::hint::black_box(recurse(1));
        }
        _ => {}
    }
    Ok(())
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    // The black-boxed array keeps a real frame on every level.
    let frame = std::hint::black_box([n; 64]);
    recurse(frame[(n % 64) as usize] + 1) + frame[0]
}

wshost_guest::export_handler!(crash);
