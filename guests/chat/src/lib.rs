//! The seed's broadcast in event style: each message `X` is pushed as
//! `Сервер：X` to every open socket of the route, the sender included. One
//! instance serves them all; the host keeps the topic (the seed's global
//! `$wsObjects` array), so a socket leaves it when it closes.

use wshost_guest::events::{Handler, Message, Socket};
use wshost_guest::topics;

const ROOM: &str = "chat";

struct Chat;

impl Handler for Chat {
    fn open(ws: Socket) {
        if let Err(e) = ws.subscribe(ROOM) {
            eprintln!("errorCode: {e}");
            ws.terminate();
        }
    }

    fn message(ws: Socket, msg: Message) {
        // As the seed: the text `close` drops the connection.
        if msg.text() == Some("close") {
            ws.terminate();
            return;
        }
        if let Err(e) = topics::publish(ROOM, format!("Сервер：{}", msg.text_lossy())) {
            eprintln!("errorCode: {e}");
        }
    }
}

wshost_guest::export_events!(Chat);
