/**
 * The HTTP request that opens a socket (or is answered over HTTP), and the
 * plain HTTP response a guest may answer it with.
 *
 * Invariant: header names compare case-insensitively, as HTTP says.
 *
 * @module
 */
/// <reference path="./wit/interfaces/wshost-websocket-types.d.ts" />
import type { Request as HostRequest } from "wshost:websocket/types@0.1.0";
import { bytes, type Data } from "./data";

/** The request as the host received it. */
export class Request {
  /** `GET`, normally. */
  readonly method: string;
  /** The path, without the query: `/chat`. */
  readonly path: string;
  /** The query without its `?`; empty when there is none. */
  readonly query: string;
  /** Every header, in order, names as the client sent them. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The peer's address, `ip:port`. */
  readonly remoteAddress: string;

  /** @internal */
  constructor(req: HostRequest) {
    this.method = req.method;
    this.path = req.path;
    this.query = req.query;
    this.headers = req.headers;
    this.remoteAddress = req.remoteAddr;
  }

  /** The first header named `name` (any case), or `undefined`. */
  header(name: string): string | undefined {
    const wanted = name.toLowerCase();
    return this.headers.find(([n]) => n.toLowerCase() === wanted)?.[1];
  }

  /** The query's parameters: `req.searchParams.get("since")`. */
  get searchParams(): URLSearchParams {
    return new URLSearchParams(this.query);
  }

  /** The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its order. */
  get protocols(): string[] {
    return this.headers
      .filter(([n]) => n.toLowerCase() === "sec-websocket-protocol")
      .flatMap(([, v]) => v.split(","))
      .map((p) => p.trim())
      .filter((p) => p !== "");
  }
}

/** HTTP headers: a record, or pairs when a name repeats (`set-cookie`). */
export type Headers = Record<string, string> | Array<[string, string]>;

/** `headers` as the WIT's list of pairs. */
export function headerList(headers: Headers = []): Array<[string, string]> {
  return Array.isArray(headers) ? headers : Object.entries(headers);
}

/** A plain HTTP answer instead of an upgrade: `new Response("no", { status: 403 })`. */
export class Response {
  readonly status: number;
  readonly headers: Array<[string, string]>;
  readonly body: Uint8Array;

  constructor(body: Data = "", init: { status?: number; headers?: Headers } = {}) {
    this.status = init.status ?? 200;
    this.headers = headerList(init.headers);
    this.body = bytes(body);
  }
}
