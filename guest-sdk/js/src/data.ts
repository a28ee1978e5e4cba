/**
 * What a guest sends and receives: a `string` is a text message, bytes
 * (`Uint8Array`, `ArrayBuffer` or any typed array) a binary one. This module
 * converts between those and the WIT's `message` variant and byte lists.
 *
 * Invariant: text stays text and bytes stay bytes in both directions.
 *
 * @module
 */
/// <reference path="./wit/interfaces/wshost-websocket-event-types.d.ts" />
import type { Message } from "wshost:websocket/event-types@0.1.0";

/** A message to send: text as a `string`, binary as bytes. */
export type Data = string | Uint8Array | ArrayBuffer | ArrayBufferView;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `data` as bytes (text as UTF-8). */
export function bytes(data: Data): Uint8Array {
  if (typeof data === "string") {
    return encoder.encode(data);
  }
  if (data instanceof Uint8Array) {
    return data;
  }
  if (data instanceof ArrayBuffer) {
    return new Uint8Array(data);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** `text` as UTF-8 into `into`, as far as it fits (whole characters only). */
export function encodeInto(text: string, into: Uint8Array): { read: number; written: number } {
  return encoder.encodeInto(text, into);
}

/** `data` as the WIT's message: text for a string, binary otherwise. */
export function toMessage(data: Data): Message {
  return typeof data === "string" ? { tag: "text", val: data } : { tag: "binary", val: bytes(data) };
}

/** The frame opcode that sends `data` whole: text for a string. */
export function opcodeOf(data: Data): "text" | "binary" {
  return typeof data === "string" ? "text" : "binary";
}

/** UTF-8 `bytes` as text (invalid sequences replaced). */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** A received message as text: a text message as it is, a binary one
 * decoded as UTF-8 (invalid sequences replaced). */
export function asText(message: string | Uint8Array): string {
  return typeof message === "string" ? message : decoder.decode(message);
}
