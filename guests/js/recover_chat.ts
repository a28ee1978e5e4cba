// guests/recover-chat in TypeScript (event world): a chat whose clients
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
// this guest names the topic and passes the client's position on, from the
// request to the open, in the socket's `data`.
import { Response, describe, keep, publish } from "@wshost/guest";
import { serve } from "@wshost/guest/events";

const TOPIC = "chat";
let kept = false;

/** Where the client left off; offsets are u64, kept as text in `data`. */
interface Since {
  offset: string;
  epoch: string;
}

export const { onRequest, onOpen, onMessage, onClose, onDrain } = serve({
  upgrade(req) {
    const offset = req.searchParams.get("since");
    const epoch = req.searchParams.get("epoch");
    if (offset === null || epoch === null) {
      return { data: undefined };
    }
    if (!/^\d{1,20}$/.test(offset) || BigInt(offset) > 0xffff_ffff_ffff_ffffn) {
      return new Response("since: an offset (digits, at most 2^64 - 1)\n", { status: 400 });
    }
    const since: Since | undefined = { offset, epoch };
    return { data: since };
  },
  open(ws) {
    if (!kept) {
      kept = true;
      try {
        keep(TOPIC, { messages: 10_000, envelope: "json" });
      } catch (e) {
        console.error(`keeping ${TOPIC}: ${describe(e)}`);
      }
    }
    const since = ws.data && { offset: BigInt(ws.data.offset), epoch: ws.data.epoch };
    try {
      ws.subscribeFrom(TOPIC, since);
    } catch (e) {
      console.error(`subscribing to ${TOPIC}: ${describe(e)}`);
      ws.close(1011, "cannot subscribe");
    }
  },
  message(ws, message) {
    if (typeof message === "string") {
      publish(TOPIC, message);
    }
  },
});
