// The seed's broadcast in event style: each message `X` is pushed as
// `Сервер：X` to every open socket of the route, the sender included. One
// instance serves them all; the host keeps the topic, so a socket leaves it
// when it closes.
import { asText, publish } from "@wshost/guest";
import { serve } from "@wshost/guest/events";

const ROOM = "chat";

export const { onRequest, onOpen, onMessage, onClose, onDrain } = serve({
  open(ws) {
    ws.subscribe(ROOM);
  },
  message(ws, message) {
    const data = asText(message);
    // As the seed: the text `close` drops the connection.
    if (data === "close") {
      ws.terminate();
      return;
    }
    publish(ROOM, `Сервер：${data}`);
  },
});
