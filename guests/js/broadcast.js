// The seed's second example in JavaScript: each message `X` is pushed as
// `Сервер：X` to every live connection of the route. The host's hub keeps
// the list of connections, so nothing here has to remove itself.
import { upgrade, recv, close } from "wshost:websocket/connection@0.1.0";
import { broadcast } from "wshost:websocket/hub@0.1.0";

const utf8 = new TextEncoder();
const text = new TextDecoder();

export function handle(req) {
  upgrade();
  for (;;) {
    let frame;
    try {
      frame = recv(undefined);
    } catch (e) {
      console.error(`errorCode: ${describe(e)}`);
      break;
    }
    if (frame === undefined) break;
    const data = text.decode(frame.data);
    if (frame.opcode === "close" || data === "close") break;
    broadcast(utf8.encode(`Сервер：${data}`), "text");
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
