// guests/recover-chat in JavaScript (event world): a chat whose clients
// recover what they missed while away. Its wire contract:
//
// - a client connects to /chat, or /chat?since=OFFSET&epoch=EPOCH with the
//   position of the last message it got;
// - every text it sends is published to topic `chat`, which keeps its last
//   10,000 messages;
// - every message delivered to it is {"offset": N, "epoch": "E", "text": "..."}:
//   first those after its position, then the live ones, none missing, none
//   twice;
// - when its position cannot be recovered its first frame is
//   {"reset": true, "epoch": "E"}, then the live messages.
//
// The host keeps the history, numbers the messages and writes the JSON:
// this guest names the topic and passes the client's position on (in the
// socket's attachment, from the request to the open). Offsets are u64:
// BigInt in JavaScript.
import { keep, subscribeFrom } from "wshost:websocket/history@0.1.0";
import { attachment, close } from "wshost:websocket/sockets@0.1.0";
import { publish } from "wshost:websocket/topics@0.1.0";

const TOPIC = "chat";
const KEEP = 10000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let kept = false;

export function onRequest(conn, req) {
  const query = new URLSearchParams(req.query);
  const offset = query.get("since");
  const epoch = query.get("epoch");
  let since;
  if (offset !== null && epoch !== null) {
    if (!/^\d+$/.test(offset)) {
      const body = encoder.encode("since: an offset (digits)\n");
      return { tag: "respond", val: { status: 400, headers: [], body } };
    }
    since = encoder.encode(`${offset} ${epoch}`);
  }
  return { tag: "upgrade", val: { protocol: undefined, headers: [], attachment: since } };
}

export function onOpen(conn) {
  if (!kept) {
    kept = true;
    try {
      keep(TOPIC, { messages: KEEP, seconds: 0, envelope: "json" });
    } catch (e) {
      console.error(`keeping ${TOPIC}: ${describe(e)}`);
    }
  }
  let since;
  const saved = attachment(conn);
  if (saved !== undefined) {
    const [offset, epoch] = decoder.decode(saved).split(" ");
    since = { offset: BigInt(offset), epoch };
  }
  try {
    subscribeFrom(conn, TOPIC, since);
  } catch (e) {
    console.error(`subscribing to ${TOPIC}: ${describe(e)}`);
    try {
      close(conn, 1011, "cannot subscribe");
    } catch {}
  }
}

export function onMessage(conn, msg) {
  if (msg.tag !== "text") {
    return;
  }
  try {
    publish(TOPIC, msg, undefined);
  } catch (e) {
    console.error(`publishing to ${TOPIC}: ${describe(e)}`);
  }
}

export function onClose(conn, code, reason) {}

export function onDrain(conn) {}

// A host error (`e.payload`: `{ tag, val }`) or any other, as text: its
// tag and message, not `{}`.
function describe(e) {
  const error = e?.payload ?? e;
  if (error?.tag !== undefined) {
    return error.val === undefined ? error.tag : `${error.tag}: ${error.val}`;
  }
  return error?.message ?? String(error);
}
