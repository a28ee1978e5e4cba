// The benchmark's Bun peer: /mirror sends every message back as it came,
// /broadcast publishes "Сервер：X" to every connection of the route.
const port = Number(process.argv[2] ?? 0);
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (server.upgrade(req, { data: { path } })) return;
    return new Response("expected a WebSocket handshake\n", { status: 400 });
  },
  websocket: {
    perMessageDeflate: false,
    open(ws) {
      if (ws.data.path === "/broadcast") ws.subscribe("all");
    },
    message(ws, msg) {
      if (ws.data.path === "/broadcast") server.publish("all", "Сервер：" + msg);
      else ws.send(msg);
    },
  },
});
console.log(`listening on http://127.0.0.1:${server.port}`);
