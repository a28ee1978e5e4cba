// The seed's first example in JavaScript: `Привет, X!` then `Как ты там, X?`
// for every message; the text `close` or a Close frame ends it without a
// Close frame.
import { upgrade, recv, push, close } from "wshost:websocket/connection@0.1.0";

const utf8 = new TextEncoder();
const text = new TextDecoder();

export function handle(req) {
  upgrade();
  for (;;) {
    let frame;
    try {
      frame = recv(undefined);
    } catch (e) {
      // The seed's `false`: log the error and drop the connection.
      console.error(`errorCode: ${describe(e)}`);
      break;
    }
    if (frame === undefined) break; // the peer has gone (the seed's '')
    const data = text.decode(frame.data);
    if (frame.opcode === "close" || data === "close") break;
    push(utf8.encode(`Привет, ${data}!`), "text", true);
    push(utf8.encode(`Как ты там, ${data}?`), "text", true);
  }
  close();
}

// A host error (`e.payload`: `{ tag, val }`) or any other, as text: its
// tag and message, not `{}`.
function describe(e) {
  const error = e?.payload ?? e;
  if (error?.tag !== undefined) {
    return error.val === undefined ? error.tag : `${error.tag}: ${error.val}`;
  }
  return error?.message ?? String(error);
}
