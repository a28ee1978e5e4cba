/// <reference path="./interfaces/wshost-websocket-event-types.d.ts" />
/// <reference path="./interfaces/wshost-websocket-history.d.ts" />
/// <reference path="./interfaces/wshost-websocket-presence.d.ts" />
/// <reference path="./interfaces/wshost-websocket-sockets.d.ts" />
/// <reference path="./interfaces/wshost-websocket-topics.d.ts" />
/// <reference path="./interfaces/wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/events@0.1.0' {
  export type ConnectionId = import('wshost:websocket/types@0.1.0').ConnectionId;
  export type Request = import('wshost:websocket/types@0.1.0').Request;
  export type Message = import('wshost:websocket/event-types@0.1.0').Message;
  export type Decision = import('wshost:websocket/event-types@0.1.0').Decision;
  export type * as WshostWebsocketEventTypes010 from 'wshost:websocket/event-types@0.1.0'; // import wshost:websocket/event-types@0.1.0
  export type * as WshostWebsocketHistory010 from 'wshost:websocket/history@0.1.0'; // import wshost:websocket/history@0.1.0
  export type * as WshostWebsocketPresence010 from 'wshost:websocket/presence@0.1.0'; // import wshost:websocket/presence@0.1.0
  export type * as WshostWebsocketSockets010 from 'wshost:websocket/sockets@0.1.0'; // import wshost:websocket/sockets@0.1.0
  export type * as WshostWebsocketTopics010 from 'wshost:websocket/topics@0.1.0'; // import wshost:websocket/topics@0.1.0
  export type * as WshostWebsocketTypes010 from 'wshost:websocket/types@0.1.0'; // import wshost:websocket/types@0.1.0
  /**
  * Every request to the route: upgrade it, or answer it over HTTP.
  * `conn` becomes the socket's id if it is upgraded.
  */
  export function onRequest(conn: ConnectionId, req: Request): Decision;
  /**
  * The 101 has been sent: the socket is open.
  */
  export function onOpen(conn: ConnectionId): void;
  /**
  * A whole message from the peer.
  */
  export function onMessage(conn: ConnectionId, msg: Message): void;
  /**
  * The socket has closed; called exactly once per opened socket.
  * `code`: the Close frame's code (ours if the host or guest closed
  * first, the peer's otherwise), 1005 for a Close frame without one,
  * 1006 when there was none (the peer vanished, or `terminate`).
  */
  export function onClose(conn: ConnectionId, code: number, reason: string): void;
  /**
  * A socket that had `backed-up` has written its whole queue out.
  */
  export function onDrain(conn: ConnectionId): void;
}
