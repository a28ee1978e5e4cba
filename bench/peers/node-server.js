// The benchmark's Node peer (the ws package): /mirror sends every message
// back as it came, /broadcast sends "Сервер：X" to every connection.
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2] ?? 0);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
const broadcast = new Set();
wss.on("listening", () => console.log(`listening on http://127.0.0.1:${wss.address().port}`));
wss.on("connection", (ws, req) => {
  const path = req.url.split("?")[0];
  if (path === "/broadcast") {
    broadcast.add(ws);
    ws.on("close", () => broadcast.delete(ws));
  }
  ws.on("message", (data, isBinary) => {
    if (path === "/broadcast") {
      const out = "Сервер：" + data.toString();
      for (const peer of broadcast) peer.send(out);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
