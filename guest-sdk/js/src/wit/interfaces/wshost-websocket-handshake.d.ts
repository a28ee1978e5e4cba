/// <reference path="./wshost-websocket-types.d.ts" />
declare module 'wshost:websocket/handshake@0.1.0' {
  /**
   * Like `connection.upgrade`, answering with subprotocol `protocol` (one
   * the client offered in `sec-websocket-protocol`) and extra `headers`
   * (e.g. `set-cookie`; not the handshake's own). A subprotocol the
   * client did not offer, or a header the host refuses, is a `protocol`
   * error and the request stays unanswered: upgrade it otherwise, or
   * respond.
   */
  export function upgradeWith(protocol: string | undefined, headers: Array<[string, string]>): void;
  export type Error = import('wshost:websocket/types@0.1.0').Error;
}
