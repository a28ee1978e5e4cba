/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/messages@0.1.0' {
  /**
   * `connection.recv`, with the message left with the host.
   */
  export function recv(timeoutMs: number | undefined): Incoming | undefined;
  /**
   * Send `msg` whole on this connection, as `connection.push` of its
   * payload and opcode with `fin`.
   */
  export function push(msg: Message): void;
  /**
   * `hub.send-to` with a held message.
   */
  export function sendTo(target: ConnectionId, msg: Message): void;
  /**
   * `hub.broadcast` with a held message.
   */
  export function broadcast(msg: Message): number;
  /**
   * `topics.publish` with a held message.
   */
  export function publish(topic: string, msg: Message, exclude: ConnectionId | undefined): number;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Opcode = import('wshost:websocket/types@0.1.0').Opcode;
  export type CloseInfo = import('wshost:websocket/types@0.1.0').CloseInfo;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
  /**
   * What `recv` hands out.
   */
  export type Incoming = IncomingMessage | IncomingClose;
  export interface IncomingMessage {
    tag: 'message',
    val: Message,
  }
  /**
   * The peer's Close frame (or the host's 1001 at shutdown); the host
   * completes the closing handshake.
   */
  export interface IncomingClose {
    tag: 'close',
    val: CloseInfo | undefined,
  }
  
  export class Message implements Disposable {
    /**
     * This type does not have a public constructor.
     */
    private constructor();
    /**
    * `text` or `binary`.
    */
    opcode(): Opcode;
    /**
    * The payload's length in bytes.
    */
    len(): bigint;
    /**
    * Up to `len` bytes of the payload from byte `offset`: fewer at
    * its end, none from it on.
    */
    read(offset: bigint, len: number): Uint8Array;
    [Symbol.dispose](): void;
  }
}
