/// <reference path="./wshost-websocket-event-types.d.ts" />
/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/sockets@0.1.0' {
  /**
   * Queue a message. `err(queue-full)`: the socket's queue overflowed
   * (`--hub-queue` messages), it is closed with 1008 and `on-close` follows.
   */
  export function send(conn: ConnectionId, msg: Message): SendStatus;
  /**
   * Close politely: what is queued goes out, then a Close frame with
   * `code` (one an endpoint may send, RFC 6455 §7.4: 1000-1003,
   * 1007-1013 or 3000-4999) and `reason` (at most 123 bytes).
   */
  export function close(conn: ConnectionId, code: number, reason: string): void;
  /**
   * Drop the TCP connection at once, without a Close frame (the seed's
   * `close()`). No-op for an unknown id.
   */
  export function terminate(conn: ConnectionId): void;
  /**
   * Bytes queued to the socket and not yet written to the network.
   */
  export function bufferedAmount(conn: ConnectionId): bigint;
  /**
   * Keep `data` (at most 16 KiB) with the socket, in the host: it outlives
   * the instance, so a fresh instance (after a trap) reads it back.
   */
  export function setAttachment(conn: ConnectionId, data: Uint8Array): void;
  /**
   * The socket's attachment; none if never set or the id is unknown.
   */
  export function attachment(conn: ConnectionId): Uint8Array | undefined;
  /**
   * Ids of this route's open sockets, ascending.
   */
  export function openSockets(): BigUint64Array;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
  export type Message = import('wshost:websocket/event-types@0.1.0').Message;
  export type SendStatus = import('wshost:websocket/event-types@0.1.0').SendStatus;
}
