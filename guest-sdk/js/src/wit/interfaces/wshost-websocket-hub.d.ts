/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/hub@0.1.0' {
  /**
   * Ids of the upgraded, still open connections of this route, this one included.
   */
  export function connections(): BigUint64Array;
  /**
   * Queue a whole message (text or binary) to one connection.
   */
  export function sendTo(target: ConnectionId, data: Uint8Array, op: Opcode): void;
  /**
   * Queue a whole message to every live connection of this route, this one
   * included; returns how many connections accepted it.
   */
  export function broadcast(data: Uint8Array, op: Opcode): number;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Opcode = import('wshost:websocket/types@0.1.0').Opcode;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
}
