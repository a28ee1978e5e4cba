/**
 * The host's errors as JavaScript exceptions: every call into the host that
 * fails throws a {@link WshostError} whose `code` names the reason, and whose
 * subclass lets a `catch` test it with `instanceof`.
 *
 * Invariant: a host error never reaches the guest as componentize-js's raw
 * `ComponentError` (whose message is `{}`); {@link hostCall} converts it.
 *
 * @module
 */
/// <reference path="./wit/interfaces/wshost-websocket-types.d.ts" />
import type { Error as HostError } from "wshost:websocket/types@0.1.0";

/** The reasons a host call fails, as the WIT names them. */
export type ErrorCode = HostError["tag"];

/** A call into wshost failed; `code` says why, `message` says it in words. */
export class WshostError extends Error {
  /** The WIT's name for the reason, e.g. `"queue-full"`. */
  readonly code: ErrorCode;
  /** The host's own words, for `protocol` and `io`. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string) {
    super(detail === undefined ? code : `${code}: ${detail}`);
    this.name = new.target.name;
    this.code = code;
    this.detail = detail;
  }
}

/** A wait (`recv` with a timeout) ran out. */
export class TimeoutError extends WshostError {}
/** The peer has gone: nothing more can be sent or received. */
export class PeerClosedError extends WshostError {}
/** A call needs an upgraded connection (`upgrade` first). */
export class NotUpgradedError extends WshostError {}
/** The request was already upgraded or answered. */
export class AlreadyAnsweredError extends WshostError {}
/** Over one of the host's bounds (message size, attachment, info). */
export class TooLargeError extends WshostError {}
/** The call broke a rule of the protocol; `detail` says which. */
export class ProtocolError extends WshostError {}
/** The network or the host failed; `detail` says how. */
export class IoError extends WshostError {}
/** The socket named is not open (any more). */
export class UnknownConnectionError extends WshostError {}
/** The socket's queue overflowed: the host closes it with 1008. */
export class QueueFullError extends WshostError {}

const classes: Record<ErrorCode, typeof WshostError> = {
  timeout: TimeoutError,
  "peer-closed": PeerClosedError,
  "not-upgraded": NotUpgradedError,
  "already-answered": AlreadyAnsweredError,
  "too-large": TooLargeError,
  protocol: ProtocolError,
  io: IoError,
  "unknown-connection": UnknownConnectionError,
  "queue-full": QueueFullError,
};

/** The host error `e` carries (componentize-js puts it in `payload`), as
 * its {@link WshostError}; any other value unchanged. */
export function fromHost(e: unknown): unknown {
  const payload = (e as { payload?: unknown } | null)?.payload;
  if (typeof payload === "object" && payload !== null && "tag" in payload) {
    const error = payload as HostError;
    const detail = "val" in error ? error.val : undefined;
    const Class = classes[error.tag] ?? WshostError;
    return new Class(error.tag, detail);
  }
  return e;
}

/** Run `call`, throwing a failed host call's error as a {@link WshostError}. */
export function hostCall<T>(call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw fromHost(e);
  }
}

/** `e` in words for a log line: a host error's code and detail, an `Error`'s
 * message, or the value itself. */
export function describe(e: unknown): string {
  const error = fromHost(e);
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** Whether a callback returned a promise (or any thenable): callbacks of
 * both worlds must be synchronous, and a promise's errors would be lost. */
export function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown } | null | undefined)?.then === "function";
}

/** `f`, which the host calls synchronously: an `async function` (or an
 * async generator) is refused with a `TypeError` where it is registered,
 * when the component is built: the host would take its return at its first
 * `await` and lose its promise's errors (an async generator would run none
 * of its body). A plain function that returns a promise is logged when it
 * does. */
export function synchronous<F>(what: string, f: F): F {
  const kind = typeof f === "function" ? f.constructor?.name : undefined;
  if (kind === "AsyncFunction" || kind === "AsyncGeneratorFunction") {
    throw new TypeError(`${what}: an async function; this world calls synchronous functions (what it does after an await would be lost)`);
  }
  return f;
}
