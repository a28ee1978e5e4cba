//! A test guest: the query string picks one behaviour the host's tests check.
//!
//! - `timeout=MS`: upgrade, `recv` with that timeout, push the outcome's name.
//! - `fragments`: upgrade, push `Hel` + `lo, ` + `world` as one fragmented text.
//! - `bad-fragments`: upgrade, push `ok\xce` as a text fragment, then `x`
//!   (refused: not UTF-8), then `\xbb` (completing `λ`), then the refusal.
//! - `protocol=P`: upgrade with subprotocol P and a `set-cookie` header
//!   (`-` for none): push `upgraded`; answer 409 with the error when refused.
//! - `busy=T`: upgrade, subscribe to topic T, take one message, compute
//!   for 1 s without a socket call, then push `done`.
//! - `nap=MS`: upgrade, push `napping`, sleep MS without reading, then push
//!   the size of each message received.
//! - `env=NAME`: answer 200 with environment variable NAME, or `unset`.
//! - `peer`: answer 200 with the request's `remote-addr`.
//! - `file=PATH`: answer 200 with the file at PATH, or 404 and the error.
//! - `poll`: upgrade, push `ready`, sleep 300 ms, `recv` with timeout 0.
//! - `broadcast-return`: upgrade, broadcast `bye all` to the hub, return.
//! - `slow-fragments=T`: upgrade, subscribe to T, push `ready`, push `Hel`
//!   as a text fragment, wait for a message, push `l`, then `o` ending it.
//! - `nap-close=MS`: upgrade, push `napping`, sleep MS without reading,
//!   then push a Close frame 4000 "bye" and return.
//! - `spin-calls`: upgrade, then call `id` forever.
//! - `after-close=push` / `after-close=recv`: upgrade, push `ready`, wait
//!   for the connection to end, then call `push` (or `recv`) forever, each
//!   failing (or saying closed) at once.
//! - `binary`: upgrade, push the bytes 0, 1, 2, 255 as a binary message.
//! - `upgrade-then-return`: upgrade and return (the host closes with 1000).
//! - `fail-before-upgrade` / `fail-after-upgrade`: return an error.
//! - `no-answer`: return without upgrading or responding.
//! - `push-close`: upgrade, push a Close frame 4000 "bye", then close.
//! - `id`: upgrade, push this connection's id and the hub's connection count.
//! - `log`: print a line to stdout and one to stderr, then answer 204;
//!   `log=N`: print a line that tries to forge another with `\r`, then N
//!   numbered lines, then answer 204.
//! - `recover=T&since=OFFSET&epoch=EPOCH`: upgrade, keep topic T's last 100
//!   messages (JSON envelope), subscribe from that position (none without
//!   `since`), push `recovered N` or `reset OFFSET EPOCH`, then `at OFFSET
//!   EPOCH` (where T's stream is), then publish each text message to T.
//! - `presence=T&info=NAME[&quiet]`: upgrade, turn T's notices on (not
//!   with `quiet`: then as the config file says), join T as NAME,
//!   then for each message `count` push T's member count, `members` push
//!   `ID=INFO,...`, `leave` unsubscribe (push `true`), `rejoin INFO` join
//!   again (push whether it was new).
//! - `topic=T`: upgrade, subscribe to topic T, then for each message
//!   `pub X` publish X to T, `pubx X` publish it to T but this connection,
//!   `unsub` unsubscribe, `count` push T's subscriber count, `id` push
//!   this connection's id, `to ID X` send X to connection ID through the
//!   hub (pushing the error if that fails).
//! - `held=T`: upgrade, subscribe to topic T, then take each message with
//!   `recv_message` (left with the host) and act on its first word, handing
//!   the whole message back: `pub` publishes it to T, `all` broadcasts it
//!   to the hub, `to ID` sends it to connection ID, `slice` pushes its
//!   length and bytes 4 to 8, `hold N` keeps it and takes N more without
//!   dropping any, then pushes how many it held and the error that stopped
//!   it (or `ok`) and drops them all; anything else is pushed back as is.

use std::time::Duration;
use wshost_guest::history::{self, Position, Recovery, Retention};
use wshost_guest::{Connection, Error, Opcode, Request, hub, presence, topics};

fn probe(req: Request, ws: Connection) -> Result<(), String> {
    let query = req.query.clone();
    let (mode, arg) = query.split_once('=').unwrap_or((query.as_str(), ""));
    match mode {
        "timeout" => {
            ws.upgrade().map_err(str)?;
            let ms = arg.parse().map_err(|_| format!("bad timeout {arg:?}"))?;
            let outcome = match ws.recv(Some(Duration::from_millis(ms))) {
                Err(Error::Timeout) => "timeout".to_string(),
                Ok(Some(frame)) => format!("frame {}", frame.text_lossy()),
                Ok(None) => "closed".to_string(),
                Err(e) => format!("error {e}"),
            };
            ws.push_text(&outcome).map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "fragments" => {
            ws.upgrade().map_err(str)?;
            ws.push(b"Hel", Opcode::Text, false).map_err(str)?;
            ws.push(b"lo, ", Opcode::Continuation, false).map_err(str)?;
            ws.push(b"world", Opcode::Continuation, true).map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "bad-fragments" => {
            ws.upgrade().map_err(str)?;
            ws.push(b"ok\xce", Opcode::Text, false).map_err(str)?;
            let refused = ws.push(b"x", Opcode::Continuation, true);
            ws.push(b"\xbb", Opcode::Continuation, true).map_err(str)?;
            ws.push_text(&format!("refused: {refused:?}"))
                .map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "protocol" => {
            let protocol = (arg != "-").then_some(arg);
            let cookie = [("set-cookie".to_string(), "probe=1".to_string())];
            if let Err(e) = ws.upgrade_with(protocol, &cookie) {
                let response = wshost_guest::Response::new(409).body(e.to_string());
                return ws.respond(response).map_err(str);
            }
            ws.push_text("upgraded").map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "busy" => {
            ws.upgrade().map_err(str)?;
            ws.subscribe(arg).map_err(str)?;
            ws.recv(None).map_err(str)?;
            let started = std::time::Instant::now();
            let mut spins = 0u64;
            while started.elapsed() < Duration::from_secs(1) {
                spins = std::hint::black_box(spins + 1);
            }
            ws.push_text("done").map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "nap" => {
            ws.upgrade().map_err(str)?;
            ws.push_text("napping").map_err(str)?;
            let ms = arg.parse().map_err(|_| format!("bad nap {arg:?}"))?;
            std::thread::sleep(Duration::from_millis(ms));
            while let Some(frame) = ws.recv(None).map_err(str)? {
                if frame.is_close() {
                    break;
                }
                ws.push_text(&frame.data.len().to_string()).map_err(str)?;
            }
        }
        "nap-close" => {
            ws.upgrade().map_err(str)?;
            ws.push_text("napping").map_err(str)?;
            let ms = arg.parse().map_err(|_| format!("bad nap {arg:?}"))?;
            std::thread::sleep(Duration::from_millis(ms));
            ws.push_close(4000, "bye").map_err(str)?;
        }
        "env" => {
            let value = std::env::var(arg).unwrap_or_else(|_| "unset".into());
            return ws.respond(wshost_guest::Response::text(value)).map_err(str);
        }
        "peer" => {
            return ws
                .respond(wshost_guest::Response::text(req.remote_addr))
                .map_err(str);
        }
        "file" => {
            let response = match std::fs::read_to_string(arg) {
                Ok(text) => wshost_guest::Response::text(text),
                Err(e) => wshost_guest::Response::new(404).body(e.to_string()),
            };
            return ws.respond(response).map_err(str);
        }
        "poll" => {
            ws.upgrade().map_err(str)?;
            ws.push_text("ready").map_err(str)?;
            std::thread::sleep(Duration::from_millis(300));
            let outcome = match ws.recv(Some(Duration::ZERO)) {
                Err(Error::Timeout) => "timeout".to_string(),
                Ok(Some(frame)) => format!("frame {}", frame.text_lossy()),
                other => format!("{other:?}"),
            };
            ws.push_text(&outcome).map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "broadcast-return" => {
            ws.upgrade().map_err(str)?;
            hub::broadcast_text("bye all").map_err(str)?;
        }
        "slow-fragments" => {
            ws.upgrade().map_err(str)?;
            ws.subscribe(arg).map_err(str)?;
            ws.push_text("ready").map_err(str)?;
            ws.push(b"Hel", Opcode::Text, false).map_err(str)?;
            ws.recv(None).map_err(str)?;
            // A part that is not the last, after others' frames were held.
            ws.push(b"l", Opcode::Continuation, false).map_err(str)?;
            ws.push(b"o", Opcode::Continuation, true).map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "after-close" => {
            ws.upgrade().map_err(str)?;
            ws.push_text("ready").map_err(str)?;
            while ws.recv(None).map_err(str)?.is_some() {}
            loop {
                if arg == "push" {
                    let _ = std::hint::black_box(ws.push_text("anyone?"));
                } else {
                    let _ = std::hint::black_box(ws.recv(None));
                }
            }
        }
        "spin-calls" => {
            ws.upgrade().map_err(str)?;
            let mut sum = 0u64;
            loop {
                sum = sum.wrapping_add(std::hint::black_box(ws.id()));
            }
        }
        "binary" => {
            ws.upgrade().map_err(str)?;
            ws.push_binary(&[0, 1, 2, 255]).map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "upgrade-then-return" => ws.upgrade().map_err(str)?,
        "fail-before-upgrade" => return Err("failing on purpose".into()),
        "fail-after-upgrade" => {
            ws.upgrade().map_err(str)?;
            return Err("failing on purpose".into());
        }
        "no-answer" => {}
        "push-close" => {
            ws.upgrade().map_err(str)?;
            ws.push_close(4000, "bye").map_err(str)?;
            ws.close();
        }
        "id" => {
            ws.upgrade().map_err(str)?;
            let live = hub::connections();
            ws.push_text(&format!("{} {}", ws.id(), live.len()))
                .map_err(str)?;
            ws.recv(None).map_err(str)?;
        }
        "log" => {
            println!("hello from the guest's stdout");
            eprintln!("hello from the guest's stderr");
            if let Ok(lines) = arg.parse::<u32>() {
                println!("forging\rINFO wshost: a line the host never wrote");
                for i in 0..lines {
                    println!("line {i}");
                }
            }
            ws.respond(wshost_guest::Response::new(204)).map_err(str)?;
        }
        "recover" => {
            // `recover=T&since=OFFSET&epoch=EPOCH`
            let topic = req.query_param("recover").unwrap_or_default();
            ws.upgrade().map_err(str)?;
            history::keep(topic, Retention::last(100).json()).map_err(str)?;
            let since = match (req.query_param("since"), req.query_param("epoch")) {
                (Some(offset), Some(epoch)) => {
                    let offset = offset
                        .parse()
                        .map_err(|_| format!("bad offset {offset:?}"))?;
                    Some(Position::new(offset, epoch))
                }
                _ => None,
            };
            let answer = match ws.subscribe_from(topic, since.as_ref()).map_err(str)? {
                Recovery::Recovered(n) => format!("recovered {n}"),
                Recovery::Reset(at) => format!("reset {} {}", at.offset, at.epoch),
            };
            ws.push_text(&answer).map_err(str)?;
            let at = history::current_position(topic).map_err(str)?;
            ws.push_text(&format!("at {} {}", at.offset, at.epoch))
                .map_err(str)?;
            while let Some(frame) = ws.recv(None).map_err(str)? {
                topics::publish(topic, frame.text_lossy().as_ref()).map_err(str)?;
            }
        }
        "presence" => {
            // `presence=T&info=NAME`
            let topic = req.query_param("presence").unwrap_or_default();
            let info = req.query_param("info").unwrap_or_default();
            ws.upgrade().map_err(str)?;
            // `&quiet`: notices as the config file says.
            if req.query_param("quiet").is_none() {
                presence::notices(topic, true).map_err(str)?;
            }
            ws.join(topic, info).map_err(str)?;
            while let Some(frame) = ws.recv(None).map_err(str)? {
                let answer = match frame.text_lossy().as_ref() {
                    "count" => presence::count(topic).to_string(),
                    "members" => presence::members(topic, None, 100)
                        .iter()
                        .map(|m| format!("{}={}", m.conn, m.info))
                        .collect::<Vec<_>>()
                        .join(","),
                    "leave" => ws.unsubscribe(topic).map_err(str)?.to_string(),
                    other => match other.strip_prefix("rejoin ") {
                        Some(info) => ws.join(topic, info).map_err(str)?.to_string(),
                        None => break,
                    },
                };
                ws.push_text(&answer).map_err(str)?;
            }
        }
        "topic" => {
            ws.upgrade().map_err(str)?;
            ws.subscribe(arg).map_err(str)?;
            while let Some(frame) = ws.recv(None).map_err(str)? {
                let text = frame.text_lossy().into_owned();
                let (command, rest) = text.split_once(' ').unwrap_or((&text, ""));
                let id = ws.id();
                match command {
                    "pub" => topics::publish(arg, rest).map(drop),
                    "pubx" => topics::publish_except(arg, rest, id).map(drop),
                    "unsub" => ws.unsubscribe(arg).map(drop),
                    "count" => ws.push_text(&topics::subscribers(arg).to_string()),
                    "id" => ws.push_text(&id.to_string()),
                    "to" => {
                        let (target, body) = rest.split_once(' ').unwrap_or((rest, ""));
                        let target = target.parse().unwrap_or(0);
                        match hub::send_text(target, body) {
                            Ok(()) => Ok(()),
                            Err(e) => ws.push_text(&format!("error {e}")),
                        }
                    }
                    _ => break,
                }
                .map_err(str)?;
            }
        }
        "held" => {
            use wshost_guest::messages::Incoming;
            ws.upgrade().map_err(str)?;
            ws.subscribe(arg).map_err(str)?;
            while let Some(Incoming::Message(msg)) = ws.recv_message(None).map_err(str)? {
                let head = String::from_utf8_lossy(&msg.read(0, 64)).into_owned();
                let mut words = head.split(' ');
                match words.next().unwrap_or_default() {
                    "pub" => msg.publish(arg, None).map(drop),
                    "all" => msg.broadcast().map(drop),
                    "to" => {
                        let target = words.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                        msg.send_to(target)
                    }
                    "slice" => {
                        let slice = String::from_utf8_lossy(&msg.read(4, 4)).into_owned();
                        ws.push_text(&format!("{} {slice}", msg.len()))
                    }
                    "hold" => {
                        let more: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
                        let mut held = vec![msg];
                        let mut stopped = "ok".to_string();
                        while held.len() <= more {
                            match ws.recv_message(None) {
                                Ok(Some(Incoming::Message(m))) => held.push(m),
                                Ok(_) => break,
                                Err(e) => {
                                    stopped = e.to_string();
                                    break;
                                }
                            }
                        }
                        ws.push_text(&format!("{} {stopped}", held.len()))
                    }
                    _ => ws.push_message(&msg),
                }
                .map_err(str)?;
            }
        }
        other => return Err(format!("unknown probe {other:?}")),
    }
    Ok(())
}

fn str(e: Error) -> String {
    e.to_string()
}

wshost_guest::export_handler!(probe);
