// The seed's first example: `Привет, X!` then `Как ты там, X?` for every
// message; the text `close` or a Close frame ends it without a Close frame.
import { asText, describe } from "@wshost/guest";
import { handler, upgrade } from "@wshost/guest/handler";

export const handle = handler((req) => {
  const ws = upgrade(req);
  try {
    // Each message until the peer closes (the seed's `''`).
    for (const message of ws) {
      const data = asText(message);
      if (data === "close") break;
      ws.send(`Привет, ${data}!`);
      ws.send(`Как ты там, ${data}?`);
    }
  } catch (e) {
    // The seed's `false`: log the error and drop the connection.
    console.error(`errorCode: ${describe(e)}`);
  }
  ws.terminate();
});
