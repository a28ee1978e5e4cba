/**
 * `@wshost/guest`: write wshost handlers in TypeScript or JavaScript.
 *
 * - `@wshost/guest/events`: the event world, in Bun's shape (`serve`).
 * - `@wshost/guest/handler`: the handler world, straight-line (`upgrade`, `recv`, `send`).
 * - this module: what both share: topics, history, presence, the request,
 *   HTTP responses and errors.
 *
 * @module
 */
export {
  AlreadyAnsweredError,
  type ErrorCode,
  IoError,
  NotUpgradedError,
  PeerClosedError,
  ProtocolError,
  QueueFullError,
  TimeoutError,
  TooLargeError,
  UnknownConnectionError,
  WshostError,
  describe,
} from "./errors";
export { type Data, asText } from "./data";
export { type Headers, Request, Response } from "./request";
export {
  type Member,
  type Position,
  type Publication,
  type Recovery,
  type Retention,
  count,
  currentPosition,
  keep,
  members,
  notices,
  publish,
  read,
  subscribers,
} from "./topics";
