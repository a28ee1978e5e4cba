// Drive a wshost mirror route with Node `ws` and permessage-deflate:
// small, large, incompressible, fragmented and repeated messages must come
// back unchanged. Prints the agreed extension, then `ok`.
import { randomBytes } from "node:crypto";
import WebSocket from "ws";

const ws = new WebSocket(process.argv[2], {
  // Compress everything we send (ws's default threshold is 1 KiB).
  perMessageDeflate: { threshold: 0 },
  maxPayload: 0,
});
const replies = [];
let waiting = null;
ws.on("message", (data, isBinary) => {
  replies.push(isBinary ? data : data.toString());
  if (waiting) waiting();
});
const next = () =>
  new Promise((resolve) => {
    const take = () => {
      waiting = null;
      resolve(replies.shift());
    };
    if (replies.length) take();
    else waiting = take;
  });
const send = (data, options = {}) =>
  new Promise((resolve, reject) => ws.send(data, options, (e) => (e ? reject(e) : resolve())));
const check = (got, want, what) => {
  const same = Buffer.isBuffer(want) ? Buffer.compare(got, want) === 0 : got === want;
  if (!same) throw new Error(`${what}: the echo differs`);
};

ws.on("open", async () => {
  try {
    if (!ws.extensions.startsWith("permessage-deflate")) throw new Error(`no deflate agreed: ${ws.extensions}`);
    console.log("extensions:", ws.extensions);
    for (let i = 0; i < 10; i++) {
      await send(`hello ${i}`);
      check(await next(), `hello ${i}`, "small");
    }
    for (let i = 0; i < 20; i++) {
      const text = `the price of item ${i} is ${i * 3} coins; `.repeat(30);
      await send(text);
      check(await next(), text, `repeated ${i}`);
    }
    let big = "";
    for (let i = 0; i < 40000; i++) big += `line ${i}: all work and no play\n`;
    await send(big);
    check(await next(), big, "1 MiB text");
    const noise = randomBytes(300000);
    await send(noise, { binary: true });
    check(await next(), noise, "incompressible binary");
    // A fragmented compressed message: one deflate stream over 5 frames.
    const parts = [0, 1, 2, 3, 4].map((i) => `part ${i} `.repeat(500));
    for (let i = 0; i < parts.length; i++) await send(parts[i], { fin: i === parts.length - 1, compress: true });
    check(await next(), parts.join(""), "fragmented message");
    console.log("ok");
    ws.close();
  } catch (e) {
    console.error(String(e));
    process.exit(1);
  }
});
ws.on("error", (e) => {
  console.error(String(e));
  process.exit(1);
});
