/// <reference path="./interfaces/wshost-websocket-connection.d.ts" />
/// <reference path="./interfaces/wshost-websocket-event-types.d.ts" />
/// <reference path="./interfaces/wshost-websocket-handshake.d.ts" />
/// <reference path="./interfaces/wshost-websocket-history.d.ts" />
/// <reference path="./interfaces/wshost-websocket-hub.d.ts" />
/// <reference path="./interfaces/wshost-websocket-messages.d.ts" />
/// <reference path="./interfaces/wshost-websocket-presence.d.ts" />
/// <reference path="./interfaces/wshost-websocket-topics.d.ts" />
/// <reference path="./interfaces/wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/handler@0.1.0' {
  export type Request = import('wshost:websocket/types@0.1.0').Request;
  export type * as WshostWebsocketConnection010 from 'wshost:websocket/connection@0.1.0'; // import wshost:websocket/connection@0.1.0
  export type * as WshostWebsocketEventTypes010 from 'wshost:websocket/event-types@0.1.0'; // import wshost:websocket/event-types@0.1.0
  export type * as WshostWebsocketHandshake010 from 'wshost:websocket/handshake@0.1.0'; // import wshost:websocket/handshake@0.1.0
  export type * as WshostWebsocketHistory010 from 'wshost:websocket/history@0.1.0'; // import wshost:websocket/history@0.1.0
  export type * as WshostWebsocketHub010 from 'wshost:websocket/hub@0.1.0'; // import wshost:websocket/hub@0.1.0
  export type * as WshostWebsocketMessages010 from 'wshost:websocket/messages@0.1.0'; // import wshost:websocket/messages@0.1.0
  export type * as WshostWebsocketPresence010 from 'wshost:websocket/presence@0.1.0'; // import wshost:websocket/presence@0.1.0
  export type * as WshostWebsocketTopics010 from 'wshost:websocket/topics@0.1.0'; // import wshost:websocket/topics@0.1.0
  export type * as WshostWebsocketTypes010 from 'wshost:websocket/types@0.1.0'; // import wshost:websocket/types@0.1.0
  /**
  * Serve one request. An `err` is logged; after an upgrade the host then
  * closes the connection with 1011, before it the host answers 500.
  */
  export function handle(req: Request): void;
}
