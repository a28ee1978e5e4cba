//! Sends every message back unchanged, text as text, binary as binary: the
//! `mirror` guest in event style, picking the client's first offered
//! subprotocol as it does. Used by the benchmarks and tests.

use wshost_guest::Request;
use wshost_guest::events::{Decision, Handler, Message, Socket, UpgradeOptions};

struct Mirror;

impl Handler for Mirror {
    fn request(req: Request) -> Decision {
        let mut options = UpgradeOptions::default();
        if let Some(first) = req.protocols().next() {
            options = options.protocol(first);
        }
        Decision::Upgrade(options)
    }

    fn message(ws: Socket, msg: Message) {
        let _ = ws.send(msg);
    }
}

wshost_guest::export_events!(Mirror);
