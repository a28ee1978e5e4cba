//! A chat whose clients recover what they missed while away (the example of
//! `docs/src/history.md`). Its wire contract:
//!
//! - a client connects to `/chat`, or to `/chat?since=OFFSET&epoch=EPOCH`
//!   with the position of the last message it got;
//! - every text it sends is published to topic `chat`, which keeps its
//!   last 10,000 messages;
//! - every message delivered to it is a text frame holding
//!   `{"offset": N, "epoch": "E", "text": "..."}`: first those after its
//!   position, then the live ones, none missing, none twice;
//! - when its position cannot be recovered (another epoch: the history was
//!   lost; or older than what is kept), its first frame is
//!   `{"reset": true, "epoch": "E"}`, then the live messages.
//!
//! The host keeps the history, numbers the messages and writes the JSON:
//! this guest only names the topic and passes the client's position on.

use std::sync::atomic::{AtomicBool, Ordering};
use wshost_guest::events::{Decision, Handler, Message, Socket, UpgradeOptions};
use wshost_guest::history::{self, Position, Retention};
use wshost_guest::{Request, Response, topics};

const TOPIC: &str = "chat";
const KEEP: u32 = 10_000;

struct RecoverChat;

impl Handler for RecoverChat {
    fn request(req: Request) -> Decision {
        // The position to recover from rides with the socket until it opens.
        let since = match (req.query_param("since"), req.query_param("epoch")) {
            (Some(offset), Some(epoch)) => match offset.parse::<u64>() {
                Ok(offset) => format!("{offset} {epoch}"),
                Err(_) => {
                    let refusal = Response::text("since: an offset (digits)\n");
                    return Decision::respond(Response {
                        status: 400,
                        ..refusal
                    });
                }
            },
            _ => String::new(),
        };
        UpgradeOptions::default().attachment(since).into()
    }

    fn open(ws: Socket) {
        static KEPT: AtomicBool = AtomicBool::new(false);
        if !KEPT.swap(true, Ordering::Relaxed)
            && let Err(e) = history::keep(TOPIC, Retention::last(KEEP).json())
        {
            eprintln!("keeping {TOPIC}: {e}");
        }
        let attachment = ws.attachment().unwrap_or_default();
        let since = std::str::from_utf8(&attachment)
            .ok()
            .and_then(|s| s.split_once(' '))
            .and_then(|(offset, epoch)| Some(Position::new(offset.parse().ok()?, epoch)));
        if let Err(e) = ws.subscribe_from(TOPIC, since.as_ref()) {
            eprintln!("subscribing to {TOPIC}: {e}");
            let _ = ws.close(1011, "cannot subscribe");
        }
    }

    fn message(_ws: Socket, msg: Message) {
        if let Some(text) = msg.text()
            && let Err(e) = topics::publish(TOPIC, text)
        {
            eprintln!("publishing to {TOPIC}: {e}");
        }
    }
}

wshost_guest::export_events!(RecoverChat);
