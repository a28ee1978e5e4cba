/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/presence@0.1.0' {
  /**
   * Subscribe `conn` to `topic` and list it as a member with `info`; `ok(true)`
   * if it was not a member yet (joining again changes its info, and
   * sends no notice). Which connections a guest may name is as for
   * `topics.subscribe`; `protocol` error past a bound.
   */
  export function join(conn: ConnectionId, topic: string, info: string): boolean;
  /**
   * Members of `topic` by connection id, ascending, after `after` (none:
   * from the first), at most `limit` (up to 1,000).
   */
  export function members(topic: string, after: ConnectionId | undefined, limit: number): Array<Member>;
  /**
   * How many members `topic` has.
   */
  export function count(topic: string): number;
  /**
   * Send `topic`'s subscribers join and leave notices from now on (or
   * stop).
   */
  export function notices(topic: string, on: boolean): void;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
  export interface Member {
    conn: ConnectionId,
    info: string,
  }
}
