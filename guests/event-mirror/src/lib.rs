//! Sends every message back unchanged, text as text, binary as binary: the
//! `mirror` guest in event style. Used by the benchmarks and tests.

use wshost_guest::events::{Handler, Message, Socket};

struct Mirror;

impl Handler for Mirror {
    fn message(ws: Socket, msg: Message) {
        let _ = ws.send(msg);
    }
}

wshost_guest::export_events!(Mirror);
