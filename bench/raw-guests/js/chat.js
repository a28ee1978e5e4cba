// The seed's broadcast in event style: each message `X` is pushed as
// `Сервер：X` to every open socket of the route, the sender included. One
// instance serves them all; the host keeps the topic, so a socket leaves it
// when it closes. Connection ids are u64: BigInt in JavaScript.
import { terminate } from "wshost:websocket/sockets@0.1.0";
import { publish, subscribe } from "wshost:websocket/topics@0.1.0";

const ROOM = "chat";
const text = new TextDecoder();

export function onRequest(conn, req) {
  return { tag: "upgrade", val: { protocol: undefined, headers: [], attachment: undefined } };
}

export function onOpen(conn) {
  try {
    subscribe(conn, ROOM);
  } catch (e) {
    console.error(`errorCode: ${describe(e)}`);
    terminate(conn);
  }
}

export function onMessage(conn, msg) {
  const data = msg.tag === "text" ? msg.val : text.decode(msg.val);
  // As the seed: the text `close` drops the connection.
  if (data === "close") {
    terminate(conn);
    return;
  }
  try {
    publish(ROOM, { tag: "text", val: `Сервер：${data}` }, undefined);
  } catch (e) {
    console.error(`errorCode: ${describe(e)}`);
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
