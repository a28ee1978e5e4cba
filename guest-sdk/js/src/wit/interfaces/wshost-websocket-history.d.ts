/// <reference path="./wshost-websocket-event-types.d.ts" />
/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/history@0.1.0' {
  /**
   * Keep `topic`'s history from now on as `retention` says. A call for a
   * topic already kept changes its retention (what is kept stays, trimmed
   * to it). At most 10,000 topics are kept: past it, the least recently
   * used one is let go (its history lost: recovering it is a reset), or
   * a `protocol` error when all are in use at that moment.
   */
  export function keep(topic: string, retention: Retention): void;
  /**
   * The position of `topic`'s last message; `protocol` error if the
   * topic keeps no history.
   */
  export function currentPosition(topic: string): Position;
  /**
   * Subscribe `conn` to `topic` from `since`: every kept message after
   * it is queued to `conn`, then the live stream follows, no message
   * missing or twice even while others publish. Which connections a
   * guest may name is as for `topics.subscribe` (a handler: its own,
   * upgraded; a coroutine: its instance's; an event handler: its route's
   * sockets). `protocol` error if the topic keeps no history, if `conn` is
   * subscribed to it already (a recovery would repeat what it got), or
   * while a handler's fragmented push is under way (recover after its
   * last fragment); `peer-closed` if the connection has closed.
   */
  export function subscribeFrom(conn: ConnectionId, topic: string, since: Position | undefined): Recovery;
  /**
   * Up to `limit` (at most 1,000) kept messages of `topic` after offset
   * `after`, for a guest that renders history itself.
   */
  export function read(topic: string, after: bigint, limit: number): Page;
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
  export type Message = import('wshost:websocket/event-types@0.1.0').Message;
  /**
   * How a kept topic's messages reach its subscribers.
   * # Variants
   * 
   * ## `"none"`
   * 
   * As published: the subscriber learns positions only from
   * `current-position` and `read`.
   * ## `"json"`
   * 
   * Each message as a text frame holding the JSON object
   * `{"offset":N,"epoch":"E","text":"..."}` (a binary message:
   * `"binary":"<base64>"` instead of `"text"`); a recovery that cannot
   * be made is told with `{"reset":true,"epoch":"E"}` as the first
   * frame. The host frames each message once for all subscribers
   * and recoveries. The envelope makes a message longer than its
   * payload (JSON escapes: up to 6x for text of control characters).
   */
  export type Envelope = 'none' | 'json';
  export interface Retention {
    /**
     * Keep at most this many of the topic's last messages (1 to
     * 1,000,000).
     */
    messages: number,
    /**
     * And none older than this many seconds (0: no age limit).
     */
    seconds: number,
    envelope: Envelope,
  }
  /**
   * A place in a topic's stream: offset 0 is before its first message.
   */
  export interface Position {
    offset: bigint,
    epoch: string,
  }
  /**
   * What `subscribe-from` did.
   */
  export type Recovery = RecoveryRecovered | RecoveryReset;
  /**
   * Every message after the position given (none given: none) was
   * queued to the connection, this many, before the live ones.
   */
  export interface RecoveryRecovered {
    tag: 'recovered',
    val: number,
  }
  /**
   * The position given cannot be recovered (another epoch, older than
   * what is kept, or more bytes than the connection's queue holds,
   * `--hub-queue-bytes`): the
   * connection is subscribed from the live stream on, which starts
   * after this position. With the `json` envelope the connection was
   * sent the reset notice first.
   */
  export interface RecoveryReset {
    tag: 'reset',
    val: Position,
  }
  /**
   * One kept message.
   */
  export interface Publication {
    offset: bigint,
    msg: Message,
  }
  /**
   * Kept messages of one epoch.
   */
  export interface Page {
    epoch: string,
    /**
     * Oldest first; the first one's offset is `after + 1` unless those
     * are no longer kept.
     */
    publications: Array<Publication>,
  }
}
