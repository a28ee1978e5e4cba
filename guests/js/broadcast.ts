// The seed's second example: each message `X` is pushed as `Сервер：X` to
// every live connection of the route. The host's hub keeps the list of
// connections, so nothing here has to remove itself.
import { asText } from "@wshost/guest";
import { handler, hub, upgrade } from "@wshost/guest/handler";

export const handle = handler((req) => {
  const ws = upgrade(req);
  for (const message of ws) {
    const data = asText(message);
    if (data === "close") break;
    hub.broadcast(`Сервер：${data}`);
  }
  ws.terminate();
});
