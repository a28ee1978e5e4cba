/**
 * The handler world as straight-line code: one instance per connection, and
 * the guest's function runs from the request to the end of the connection.
 *
 * ```ts
 * import { handler, upgrade } from "@wshost/guest/handler";
 * export const handle = handler((req) => {
 *   const ws = upgrade(req);
 *   for (const message of ws) ws.send(message);
 * });
 * ```
 *
 * Invariant: the connection is this instance's own; {@link upgrade} and
 * {@link respond} answer its request, at most once between them.
 *
 * @module
 */
/// <reference path="./wit/handler.d.ts" />
import * as connection from "wshost:websocket/connection@0.1.0";
import * as handshake from "wshost:websocket/handshake@0.1.0";
import * as hostHub from "wshost:websocket/hub@0.1.0";
import type { Request as HostRequest } from "wshost:websocket/handler@0.1.0";
import type { Opcode } from "wshost:websocket/types@0.1.0";
import { type Data, bytes, opcodeOf, text } from "./data";
import { IoError, PeerClosedError, describe, hostCall, isThenable, synchronous } from "./errors";
import { type Headers, Request, Response, headerList } from "./request";
import { Subscriber } from "./topics";

export type { Opcode };

/** How the peer closed: its Close frame's code and reason. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** The upgraded connection. Iterating it yields each message until the peer
 * closes. */
export class WebSocket extends Subscriber implements Iterable<string | Uint8Array> {
  /** The host's id of this connection, as other handlers see it in the hub. */
  readonly id: bigint = connection.id();
  /** How the peer closed, once `recv` returned `null` for its Close frame
   * (`undefined` when it vanished without one). */
  closeInfo: CloseInfo | undefined;

  /** @internal */
  constructor() {
    super();
  }

  /** The next message: text as a `string`, binary as a `Uint8Array`; `null`
   * once the peer has closed. Throws `TimeoutError` after `timeoutMs`. */
  recv(timeoutMs?: number): string | Uint8Array | null {
    const frame = hostCall(() => connection.recv(timeoutMs));
    if (frame === undefined) {
      return null;
    }
    switch (frame.opcode) {
      case "close":
        this.closeInfo = frame.close ?? { code: 1005, reason: "" };
        return null;
      case "text":
        return text(frame.data);
      default:
        return frame.data;
    }
  }

  *[Symbol.iterator](): Iterator<string | Uint8Array> {
    for (;;) {
      const message = this.recv();
      if (message === null) {
        return;
      }
      yield message;
    }
  }

  /** Send a whole message: a `string` as text, bytes as binary. Waits while
   * the socket is not writable. */
  send(data: Data): void {
    hostCall(() => connection.push(bytes(data), opcodeOf(data), true));
  }

  /** The seed's `push(data, opcode, fin)`: one frame; `fin = false` starts
   * or continues a fragmented message (then opcode `continuation`). */
  push(data: Data, opcode: Opcode, fin = true): void {
    hostCall(() => connection.push(bytes(data), opcode, fin));
  }

  /** Close politely, with a Close frame; nothing to do once the peer has
   * gone. */
  close(code = 1000, reason = ""): void {
    try {
      hostCall(() => connection.pushClose(code, reason));
    } catch (e) {
      if (!(e instanceof PeerClosedError)) {
        throw e;
      }
    }
  }

  /** Drop the connection at once, without a Close frame (the seed's `close()`). */
  terminate(): void {
    connection.close();
  }
}

/** Answer the request with `101 Switching Protocols` (naming `protocol`, with
 * extra `headers`, when given): the connection, ready for `recv` and `send`. */
export function upgrade(
  _req?: Request,
  options: { protocol?: string; headers?: Headers } = {},
): WebSocket {
  if (options.protocol === undefined && options.headers === undefined) {
    hostCall(() => connection.upgrade());
  } else {
    const headers = headerList(options.headers);
    hostCall(() => handshake.upgradeWith(options.protocol, headers));
  }
  return new WebSocket();
}

/** Answer the request over plain HTTP instead of upgrading it. */
export function respond(response: Response): void {
  hostCall(() => connection.respond(response.status, response.headers, response.body));
}

/** Every connection of this route: their ids, and sending to them by id. */
export const hub = {
  /** The ids of the route's open connections. */
  connections(): bigint[] {
    return Array.from(hostHub.connections());
  },
  /** Queue `data` to connection `id`. */
  sendTo(id: bigint, data: Data): void {
    hostCall(() => hostHub.sendTo(id, bytes(data), opcodeOf(data)));
  },
  /** Queue `data` to every open connection of the route; to how many. */
  broadcast(data: Data): number {
    return hostCall(() => hostHub.broadcast(bytes(data), opcodeOf(data)));
  },
};

/** The handler world's export for `serve`: it runs once per connection and
 * must be synchronous (`recv` blocks; an `async` one is a `TypeError` here,
 * when the component is built). A peer that goes away (or a network
 * error) ends it quietly; any other error is logged and the host answers
 * 500 before the upgrade, closes with 1011 after it. The peer is told
 * nothing of the error's text. */
export function handler(serve: (req: Request) => void): (req: HostRequest) => void {
  synchronous("handler", serve);
  return (req) => {
    try {
      if (isThenable(serve(new Request(req)))) {
        console.error("handler: returned a promise; the handler world's function must be synchronous");
      }
    } catch (e) {
      if (e instanceof PeerClosedError || e instanceof IoError) {
        return;
      }
      console.error(`handler: ${describe(e)}`);
      // componentize-js makes a thrown string the export's `err`.
      throw "handler failed";
    }
  };
}
