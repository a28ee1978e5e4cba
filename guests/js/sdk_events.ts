// Drives @wshost/guest's event world for tests/sdk.rs: the request and
// its HTTP answer, `data` kept in the host, errors with a code, a callback
// that throws, one that returns a promise, an async one refused.
import { Response, WshostError, describe, subscribers } from "@wshost/guest";
import { serve } from "@wshost/guest/events";

/** What `serve` said of an async callback when this component was built. */
let refused = "not refused";
try {
  serve({ async message() {} });
} catch (e) {
  refused = describe(e);
}

export const { onRequest, onOpen, onMessage, onClose, onDrain } = serve({
  upgrade(req) {
    if (req.searchParams.has("deny")) {
      return new Response("denied\n", { status: 403, headers: { "x-why": "asked" } });
    }
    if (req.searchParams.has("wrong")) {
      // What plain JavaScript may return: neither an Upgrade nor a Response.
      const wrong: unknown = { status: 403 };
      return wrong as Response;
    }
    if (req.searchParams.has("big")) {
      return { data: { name: "x".repeat(20_000), agent: "" } };
    }
    return {
      data: { name: req.searchParams.get("name") ?? "", agent: req.header("User-Agent") ?? "" },
      protocol: req.protocols[0],
    };
  },
  open(ws) {
    ws.send(JSON.stringify({ name: ws.data.name, address: ws.remoteAddress, protocol: ws.protocol ?? null }));
  },
  message(ws, message) {
    if (typeof message !== "string") {
      ws.send(message);
      return;
    }
    const [command, ...rest] = message.split(" ");
    const arg = rest.join(" ");
    switch (command) {
      case "rename":
        ws.data = { ...ws.data, name: arg };
        ws.send("renamed");
        break;
      case "whoami":
        ws.send(ws.data.name);
        break;
      case "bad-close":
        try {
          ws.close(1004, "");
        } catch (e) {
          const error = e as WshostError;
          ws.send(`${error instanceof WshostError} ${error.name} ${error.code} ${describe(e)}`);
        }
        break;
      case "sub":
        ws.send(`${ws.subscribe(arg)} ${subscribers(arg)}`);
        break;
      case "pub": {
        const [topic, ...text] = arg.split(" ");
        ws.send(`sent to ${ws.publish(topic, text.join(" "))}`);
        break;
      }
      case "surrogate":
        try {
          ws.send(JSON.parse('"\\ud800"') as string);
        } catch (e) {
          ws.send(`refused: ${describe(e)}`);
        }
        ws.send("survived");
        break;
      case "throw":
        throw new Error("thrown on purpose");
      case "refused":
        ws.send(refused);
        break;
      case "promise":
        // What a callback that is not `async` may still return.
        return Promise.resolve() as unknown as undefined;
      default:
        ws.send(`unknown ${command}`);
    }
  },
});
