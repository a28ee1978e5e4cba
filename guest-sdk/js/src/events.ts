/**
 * The event world in Bun's shape: one instance serves every socket of the
 * route, and `serve({ open, message, close, drain })` turns a handler object
 * into the world's exports:
 *
 * ```ts
 * import { serve } from "@wshost/guest/events";
 * export const { onRequest, onOpen, onMessage, onClose, onDrain } = serve({
 *   open(ws) { ws.subscribe("chat"); },
 *   message(ws, message) { ws.publish("chat", message); },
 * });
 * ```
 *
 * Invariant: a guest needs no connection id (each open socket has one
 * {@link ServerWebSocket}; `ws.id` is there for logs). What a socket was
 * opened with (`data`, the remote address, the subprotocol) lives in the
 * host's attachment, so a fresh instance after a trap sees the same
 * values; the instance keeps only the address and subprotocol, so its
 * memory does not grow with what sockets carry.
 *
 * @module
 */
/// <reference path="./wit/events.d.ts" />
import * as sockets from "wshost:websocket/sockets@0.1.0";
import type { ConnectionId, Decision, Message, Request as HostRequest } from "wshost:websocket/events@0.1.0";
import { type Data, bytes, encodeInto, text, toMessage } from "./data";
import { PeerClosedError, TooLargeError, describe, fromHost, hostCall, isThenable, synchronous } from "./errors";
import { type Headers, Request, Response, headerList } from "./request";
import { Subscriber } from "./topics";

/** What `upgrade` returns to accept a socket: its `data`, and optionally the
 * subprotocol chosen and extra headers for the 101. */
export interface Upgrade<T> {
  data?: T;
  protocol?: string;
  headers?: Headers;
}

/** The callbacks of a route; all are optional. */
export interface WebSocketHandler<T = undefined> {
  /** Decide on a request: an {@link Upgrade} to accept (the default), a
   * {@link Response} to answer over HTTP instead. */
  upgrade?(req: Request): Upgrade<T> | Response | void;
  /** The socket is open. */
  open?(ws: ServerWebSocket<T>): void;
  /** A whole message: text as a `string`, binary as a `Uint8Array`. */
  message?(ws: ServerWebSocket<T>, message: string | Uint8Array): void;
  /** The socket has closed (once per opened socket): the Close frame's
   * code and reason, 1006 when there was none. */
  close?(ws: ServerWebSocket<T>, code: number, reason: string): void;
  /** A socket whose `send` said `"backed-up"` has written its queue out. */
  drain?(ws: ServerWebSocket<T>): void;
}

/** The event world's exports, for `export const { … } = serve(…)`. */
export interface Exports {
  onRequest(conn: ConnectionId, req: HostRequest): Decision;
  onOpen(conn: ConnectionId): void;
  onMessage(conn: ConnectionId, msg: Message): void;
  onClose(conn: ConnectionId, code: number, reason: string): void;
  onDrain(conn: ConnectionId): void;
}

/** What the SDK keeps in the host's attachment (JSON): `d` the data, `a`
 * the remote address, `p` the subprotocol. */
interface Saved<T> {
  d?: T;
  a: string;
  p?: string;
}

/** The host's bound on a socket's attachment. */
const MAX_ATTACHMENT = 16 * 1024;

/** Where each attachment is encoded. The host copies the bytes before the
 * guest's code runs again (see `decide`), so one buffer serves every
 * socket. `TextEncoder.encode` makes an `ArrayBuffer` per call, and
 * SpiderMonkey did not reclaim those while 10,000 sockets opened (it did
 * reclaim plain objects): each opening grew the instance's memory, which
 * never shrinks (docs: benchmarks, "The guest SDKs"). */
const scratch = new Uint8Array(MAX_ATTACHMENT);

/** `saved` as the attachment's bytes, valid until the guest's next
 * attachment; throws `TooLargeError` past the host's bound (and JSON's own
 * errors: a BigInt, a cycle). */
function encodeSaved<T>(saved: Saved<T>): Uint8Array {
  const json = JSON.stringify(saved);
  const { read, written } = encodeInto(json, scratch);
  if (read < json.length) {
    const size = bytes(json).length;
    throw new TooLargeError("too-large", `data is ${size} bytes as JSON; a socket keeps at most ${MAX_ATTACHMENT}`);
  }
  return scratch.subarray(0, written);
}

/** One open socket. */
export class ServerWebSocket<T = undefined> extends Subscriber {
  /** The host's id of this socket: for logs and presence lists. */
  readonly id: bigint;
  /** The address and subprotocol, read once from the attachment. */
  #opened: { a: string; p?: string } | undefined;

  /** @internal */
  constructor(id: bigint) {
    super();
    this.id = id;
  }

  #load(): Saved<T> {
    const attachment = sockets.attachment(this.id);
    return attachment === undefined ? { a: "" } : (JSON.parse(text(attachment)) as Saved<T>);
  }

  #open(): { a: string; p?: string } {
    if (this.#opened === undefined) {
      const { a, p } = this.#load();
      this.#opened = { a, p };
    }
    return this.#opened;
  }

  /** What `upgrade` returned as `data`, read from the host: each read is a
   * fresh copy, so change it by assigning `ws.data = …`, which stores the
   * new value as JSON (at most 16 KiB with the address and subprotocol;
   * past it `TooLargeError`). */
  get data(): T {
    return this.#load().d as T;
  }

  set data(value: T) {
    const { a, p } = this.#open();
    const encoded = encodeSaved({ d: value, a, p });
    hostCall(() => sockets.setAttachment(this.id, encoded));
  }

  /** The peer's address, `ip:port`. */
  get remoteAddress(): string {
    return this.#open().a;
  }

  /** The subprotocol `upgrade` chose, or `undefined`. */
  get protocol(): string | undefined {
    return this.#open().p;
  }

  /** Bytes queued to the socket and not yet written. */
  get bufferedAmount(): number {
    return Number(sockets.bufferedAmount(this.id));
  }

  /** Queue a message: `"queued"`, or `"backed-up"` when the queue is past
   * its soft limit (wait for `drain`). Throws `QueueFullError` when
   * it overflowed (the host then closes the socket with 1008). */
  send(data: Data): "queued" | "backed-up" {
    // hostCall's work without its closure: a send is per message.
    try {
      return sockets.send(this.id, toMessage(data));
    } catch (e) {
      throw fromHost(e);
    }
  }

  /** Close politely: what is queued goes out, then a Close frame. */
  close(code = 1000, reason = ""): void {
    hostCall(() => sockets.close(this.id, code, reason));
  }

  /** Drop the connection at once, without a Close frame. */
  terminate(): void {
    sockets.terminate(this.id);
  }
}

/** This route's open sockets. */
export function openSockets<T = undefined>(): ServerWebSocket<T>[] {
  return Array.from(sockets.openSockets(), (id) => socket<T>(id));
}

const open = new Map<bigint, ServerWebSocket<any>>();

function socket<T>(id: bigint): ServerWebSocket<T> {
  let ws = open.get(id);
  if (ws === undefined) {
    ws = new ServerWebSocket<T>(id);
    open.set(id, ws);
  }
  return ws;
}

/** The event world's exports for `handler`. A callback that throws is
 * logged with its error's message; the socket stays open. Callbacks are
 * called synchronously: an `async` one is a `TypeError` here, when the
 * component is built. */
export function serve<T = undefined>(handler: WebSocketHandler<T>): Exports {
  for (const what of ["upgrade", "open", "message", "close", "drain"] as const) {
    synchronous(what, handler[what]);
  }
  return {
    onRequest(conn, req) {
      // Whatever goes wrong in here answers 500 and is logged: a throw
      // out of the export would trap the instance every socket shares.
      try {
        return decide(handler, new Request(req));
      } catch (e) {
        console.error(`upgrade: ${describe(e)}`);
        return { tag: "respond", val: { status: 500, headers: [], body: bytes("internal error\n") } };
      }
    },
    onOpen(conn) {
      guarded("open", () => handler.open?.(socket<T>(conn)));
    },
    onMessage(conn, msg) {
      // guarded's work spelled out, without a closure: this is per message.
      if (handler.message == null) {
        return;
      }
      try {
        settled("message", handler.message(open.get(conn) ?? socket<T>(conn), msg.val));
      } catch (e) {
        failed("message", e);
      }
    },
    onClose(conn, code, reason) {
      guarded("close", () => handler.close?.(socket<T>(conn), code, reason));
      open.delete(conn);
    },
    onDrain(conn) {
      guarded("drain", () => handler.drain?.(socket<T>(conn)));
    },
  };
}

/** The decision for `request`: `upgrade`'s answer, checked. Anything but
 * an {@link Upgrade} (or nothing) or a {@link Response} is refused with an
 * error, never taken for an upgrade. */
function decide<T>(handler: WebSocketHandler<T>, request: Request): Decision {
  const decided: unknown = handler.upgrade?.(request);
  if (decided instanceof Response) {
    return { tag: "respond", val: { status: decided.status, headers: decided.headers, body: decided.body } };
  }
  if (decided != null && (typeof decided !== "object" || "status" in decided || "then" in decided)) {
    throw new TypeError("upgrade must return an Upgrade ({ data, protocol, headers }), a Response from @wshost/guest, or nothing");
  }
  const options = (decided ?? {}) as Upgrade<T>;
  // Each of the guest's values read once, into values of the SDK's own:
  // componentize-js lowers the decision after this returns, so it must
  // find nothing there that could throw (a trap of the shared instance)
  // or run the guest's code (a getter that encodes another attachment
  // would overwrite this one's buffer).
  const protocol: unknown = options.protocol;
  if (protocol !== undefined && typeof protocol !== "string") {
    throw new TypeError("upgrade: protocol must be a string");
  }
  const headers: Array<[string, string]> = [];
  for (const pair of headerList(options.headers)) {
    const [name, value]: unknown[] = Array.isArray(pair) ? pair : [];
    if (typeof name !== "string" || typeof value !== "string") {
      throw new TypeError("upgrade: headers must be strings");
    }
    headers.push([name, value]);
  }
  const attachment = encodeSaved({ d: options.data, a: request.remoteAddress, p: protocol });
  return { tag: "upgrade", val: { protocol, headers, attachment } };
}

/** Run a callback: what it throws is logged and the socket stays open; a
 * peer that has gone is not worth a line. A callback must not be async:
 * the host's next event may come before its promise settles. */
function guarded(what: string, callback: () => unknown): void {
  try {
    settled(what, callback());
  } catch (e) {
    failed(what, e);
  }
}

/** What a callback returned: nothing, as it must be synchronous; a promise
 * is logged (its errors would be lost). */
function settled(what: string, returned: unknown): void {
  if (returned !== undefined && isThenable(returned)) {
    console.error(`${what}: returned a promise; callbacks must be synchronous (its errors are lost)`);
  }
}

/** What a callback threw, logged (a peer that has gone is not worth a line). */
function failed(what: string, e: unknown): void {
  if (!(e instanceof PeerClosedError)) {
    console.error(`${what}: ${describe(e)}`);
  }
}
