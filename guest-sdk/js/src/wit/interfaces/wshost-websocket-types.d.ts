declare module 'wshost:websocket/types@0.1.0' {
  /**
   * A connection's id: unique within one server process, never reused.
   */
  export type ConnectionId = bigint;
  /**
   * RFC 6455 frame opcodes.
   * # Variants
   * 
   * ## `"continuation"`
   * 
   * 0x0, the rest of a fragmented message.
   * ## `"text"`
   * 
   * 0x1, UTF-8 text.
   * ## `"binary"`
   * 
   * 0x2, opaque bytes.
   * ## `"close"`
   * 
   * 0x8, the closing handshake.
   * ## `"ping"`
   * 
   * 0x9
   * ## `"pong"`
   * 
   * 0xA
   */
  export type Opcode = 'continuation' | 'text' | 'binary' | 'close' | 'ping' | 'pong';
  /**
   * Status code and reason of a Close frame (RFC 6455 §7.4).
   */
  export interface CloseInfo {
    code: number,
    reason: string,
  }
  /**
   * One WebSocket message as the handler sees it.
   * 
   * `recv` hands out whole messages: fragments are joined by the host, so a
   * received frame has `fin = true` and opcode text, binary or close
   * (pings are answered by the host and never reach the handler).
   */
  export interface Frame {
    opcode: Opcode,
    data: Uint8Array,
    fin: boolean,
    /**
     * Set on close frames that carried a status code.
     */
    close?: CloseInfo,
  }
  /**
   * The HTTP request that reached the handler.
   */
  export interface Request {
    method: string,
    /**
     * Path without the query string, e.g. `/websocket`.
     */
    path: string,
    /**
     * Query string without the `?`; empty when there is none.
     */
    query: string,
    /**
     * Header names are lower-case, in the order the client sent them.
     */
    headers: Array<[string, string]>,
    /**
     * The peer's socket address, e.g. `127.0.0.1:53122` (behind a
     * load balancer the server trusts to send the PROXY protocol:
     * the client's, as the balancer names it).
     */
    remoteAddr: string,
  }
  /**
   * Why a connection or hub call failed.
   */
  export type Error = ErrorTimeout | ErrorPeerClosed | ErrorNotUpgraded | ErrorAlreadyAnswered | ErrorTooLarge | ErrorProtocol | ErrorIo | ErrorUnknownConnection | ErrorQueueFull;
  /**
   * `recv` saw no message within its timeout; the connection is intact.
   */
  export interface ErrorTimeout {
    tag: 'timeout',
  }
  /**
   * The peer has gone (or `close` was called); nothing more can be sent.
   */
  export interface ErrorPeerClosed {
    tag: 'peer-closed',
  }
  /**
   * The call needs an upgraded connection (`recv`, `push`, ...).
   */
  export interface ErrorNotUpgraded {
    tag: 'not-upgraded',
  }
  /**
   * The request was already answered or upgraded; it can be only once.
   */
  export interface ErrorAlreadyAnswered {
    tag: 'already-answered',
  }
  /**
   * A message or frame exceeds the host's size limit.
   */
  export interface ErrorTooLarge {
    tag: 'too-large',
  }
  /**
   * The request or the pushed data breaks the protocol (e.g. a text
   * push that is not UTF-8, or not a WebSocket handshake request).
   */
  export interface ErrorProtocol {
    tag: 'protocol',
    val: string,
  }
  /**
   * The socket failed.
   */
  export interface ErrorIo {
    tag: 'io',
    val: string,
  }
  /**
   * No live connection has that id (hub calls).
   */
  export interface ErrorUnknownConnection {
    tag: 'unknown-connection',
  }
  /**
   * The target connection's queue overflowed: it was not keeping up and
   * has been evicted from the hub and closed with 1008 (hub calls).
   */
  export interface ErrorQueueFull {
    tag: 'queue-full',
  }
}
