/// <reference path="./wshost-websocket-event-types.d.ts" />
/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/topics@0.1.0' {
  /**
   * Subscribe `conn` to `topic`; `ok(true)` if it was not subscribed yet.
   * Topic names are 1 to 256 bytes; a connection holds at most 1,024
   * subscriptions (`protocol` error past either).
   */
  export function subscribe(conn: ConnectionId, topic: string): boolean;
  /**
   * Unsubscribe `conn` from `topic`; `ok(true)` if it was subscribed.
   */
  export function unsubscribe(conn: ConnectionId, topic: string): boolean;
  /**
   * Queue `msg` to every subscriber of `topic` but `exclude` (Bun's
   * `ws.publish` excludes the sender, `server.publish` nobody); returns
   * how many subscribers took it.
   */
  export function publish(topic: string, msg: Message, exclude: ConnectionId | undefined): number;
  /**
   * How many connections are subscribed to `topic`.
   */
  export function subscribers(topic: string): number;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
  export type Message = import('wshost:websocket/event-types@0.1.0').Message;
}
