/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/connection@0.1.0' {
  /**
   * This connection's id, the one other handlers see in `hub.connections`.
   */
  export function id(): ConnectionId;
  /**
   * Answer the request with `101 Switching Protocols`.
   * Fails with `protocol` when the request is not a valid WebSocket handshake
   * (the host then answers 400 or 426 itself).
   */
  export function upgrade(): void;
  /**
   * Wait for the next message.
   * 
   * `ok(some(frame))`: a message, or the peer's Close frame (opcode close);
   * the host completes the closing handshake. When the server shuts down,
   * the host sends the peer Close 1001 and `recv` returns that frame.
   * `ok(none)`: the connection is closed; later calls return the same.
   * `err(timeout)` after `timeout-ms` (none = wait forever).
   */
  export function recv(timeoutMs: number | undefined): Frame | undefined;
  /**
   * Send a frame. `fin = false` sends a fragment: continue with opcode
   * `continuation` until a push with `fin = true`. Waits while the socket
   * is not writable. Use `push-close` for close frames.
   */
  export function push(data: Uint8Array, op: Opcode, fin: boolean): void;
  /**
   * Send a Close frame with a status code and reason (the polite close).
   */
  export function pushClose(code: number, reason: string): void;
  /**
   * Drop the TCP connection at once, without a Close frame. Idempotent.
   */
  export function close(): void;
  /**
   * Answer the request with a plain HTTP response instead of upgrading.
   */
  export function respond(status: number, headers: Array<[string, string]>, body: Uint8Array): void;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Opcode = import('wshost:websocket/types@0.1.0').Opcode;
  export type Frame = import('wshost:websocket/types@0.1.0').Frame;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
}
