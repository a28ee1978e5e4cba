/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/event-types@0.1.0' {
  export type Request = import('wshost:websocket/types@0.1.0').Request;
  /**
   * One whole WebSocket message (fragments are joined by the host).
   */
  export type Message = MessageText | MessageBinary;
  /**
   * UTF-8 text (the host has checked it).
   */
  export interface MessageText {
    tag: 'text',
    val: string,
  }
  export interface MessageBinary {
    tag: 'binary',
    val: Uint8Array,
  }
  /**
   * What `sockets.send` did with a message (Bun's `send` result).
   * # Variants
   * 
   * ## `"queued"`
   * 
   * Queued below the socket's backpressure limit.
   * ## `"backed-up"`
   * 
   * Queued, but the socket's backlog is past its backpressure limit
   * (`--backpressure-limit`): hold further sends until `on-drain`.
   */
  export type SendStatus = 'queued' | 'backed-up';
  export interface UpgradeOptions {
    /**
     * The subprotocol picked from the client's `sec-websocket-protocol`
     * offer; the host refuses (500) a pick the client did not offer.
     */
    protocol?: string,
    /**
     * Extra headers of the 101 response (e.g. `set-cookie`).
     */
    headers: Array<[string, string]>,
    /**
     * The socket's first attachment (see `sockets.set-attachment`).
     */
    attachment?: Uint8Array,
  }
  export interface Response {
    status: number,
    headers: Array<[string, string]>,
    body: Uint8Array,
  }
  /**
   * The guest's answer to a request that reached an event route.
   */
  export type Decision = DecisionUpgrade | DecisionRespond;
  /**
   * Accept the WebSocket handshake (101).
   */
  export interface DecisionUpgrade {
    tag: 'upgrade',
    val: UpgradeOptions,
  }
  /**
   * Answer with a plain HTTP response instead (a page, a 403, ...).
   */
  export interface DecisionRespond {
    tag: 'respond',
    val: Response,
  }
}
