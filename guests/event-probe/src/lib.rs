//! A test guest of the event world. The request's query picks what the
//! request hook does; each text message is a command, answered with a text.
//! Every `on-close` is published to the topic `closes` as
//! `closed ID CODE REASON` (and logged so), so a test can watch them.
//!
//! Query: `respond` (a 200 page), `refuse` (403), `protocol=P` (upgrade
//! with subprotocol P and header `x-probe: yes`), `name=N` (upgrade with the
//! attachment N), `trap` (panic in the request hook).
//!
//! Messages: `whoami`, `set N`, `sub T`, `unsub T`, `pub T M`, `pubx T M`,
//! `count T`, `open`, `close CODE REASON`, `terminate`, `panic`, `spin`, `bomb`,
//! `flood N` (N sends of 64 KiB; `drained` follows on drain), `buffered`,
//! `nap MS` (sleep MS, holding up the route's instance; answers `napped`),
//! `id`, `send ID M` (M to socket ID, here or on another process).

use wshost_guest::events::{Decision, Handler, Message, SendStatus, Socket, UpgradeOptions};
use wshost_guest::{Request, Response, topics};

struct Probe;

impl Handler for Probe {
    fn request(req: Request) -> Decision {
        let (mode, arg) = req.query.split_once('=').unwrap_or((&req.query, ""));
        match mode {
            "respond" => Response::text("page from the event guest\n").into(),
            "refuse" => Response::new(403).body("not here\n").into(),
            "protocol" => UpgradeOptions::default()
                .protocol(arg)
                .header("x-probe", "yes")
                .into(),
            "name" => UpgradeOptions::default().attachment(arg).into(),
            "trap" => panic!("request hook crashing on purpose"),
            _ => Decision::upgrade(),
        }
    }

    fn message(ws: Socket, msg: Message) {
        let text = msg.text_lossy().into_owned();
        let (command, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let reply = match command {
            "whoami" => ws
                .attachment()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .unwrap_or_else(|| "-".into()),
            "set" => format!("{:?}", ws.set_attachment(rest.as_bytes())),
            "sub" => format!("{:?}", ws.subscribe(rest)),
            "unsub" => format!("{:?}", ws.unsubscribe(rest)),
            "pub" | "pubx" => {
                let (topic, body) = rest.split_once(' ').unwrap_or((rest, ""));
                let sent = if command == "pub" {
                    topics::publish(topic, body)
                } else {
                    ws.publish(topic, body)
                };
                format!("published {sent:?}")
            }
            "count" => topics::subscribers(rest).to_string(),
            "id" => ws.id().to_string(),
            "send" => {
                let (target, body) = rest.split_once(' ').unwrap_or((rest, ""));
                let target = Socket::from_id(target.parse().unwrap_or(0));
                format!("sent {:?}", target.send(body))
            }
            "open" => format!("{:?}", wshost_guest::events::open_sockets().len()),
            "close" => {
                let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
                let closed = ws.close(code.parse().unwrap_or(0), reason);
                if closed.is_ok() {
                    return;
                }
                format!("{closed:?}")
            }
            "terminate" => return ws.terminate(),
            "nap" => {
                let ms = rest.parse().unwrap_or(0);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                "napped".into()
            }
            "panic" => panic!("event crashing on purpose"),
            "spin" => loop {
                std::hint::spin_loop();
            },
            "bomb" => {
                // Grow memory until the host's cap stops the instance.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "flood" => {
                let chunk = vec![0x5A; 64 << 10];
                let mut backed_up = 0;
                for _ in 0..rest.parse().unwrap_or(1) {
                    match ws.send(chunk.as_slice()) {
                        Ok(SendStatus::BackedUp) => backed_up += 1,
                        Ok(SendStatus::Queued) => {}
                        Err(e) => return eprintln!("flood: {e}"),
                    }
                }
                format!("flooded, {backed_up} backed up")
            }
            "buffered" => ws.buffered_amount().to_string(),
            other => format!("unknown command {other:?}"),
        };
        let _ = ws.send(reply);
    }

    fn close(ws: Socket, code: u16, reason: String) {
        eprintln!("closed {} {code} {reason}", ws.id());
        let _ = topics::publish("closes", format!("closed {} {code} {reason}", ws.id()));
    }

    fn drain(ws: Socket) {
        let _ = ws.send("drained");
    }
}

wshost_guest::export_events!(Probe);
