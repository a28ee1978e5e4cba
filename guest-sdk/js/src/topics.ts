/**
 * Topics, history and presence: the host's publish/subscribe, shared by
 * every route and, on a cluster, every process. A socket subscribes through
 * its socket object (`ws.subscribe`); anyone may publish.
 *
 * Invariant: every function here exists in both worlds JavaScript can
 * implement (their WIT imports `topics`, `history` and `presence`).
 *
 * @module
 */
/// <reference path="./wit/interfaces/wshost-websocket-topics.d.ts" />
/// <reference path="./wit/interfaces/wshost-websocket-history.d.ts" />
/// <reference path="./wit/interfaces/wshost-websocket-presence.d.ts" />
import * as hostTopics from "wshost:websocket/topics@0.1.0";
import * as hostHistory from "wshost:websocket/history@0.1.0";
import * as hostPresence from "wshost:websocket/presence@0.1.0";
import type { Position, Recovery as HostRecovery } from "wshost:websocket/history@0.1.0";
import { type Data, toMessage } from "./data";
import { fromHost, hostCall } from "./errors";

export type { Position };

/** Send `data` to every subscriber of `topic` (on every process of a
 * cluster); the number of local subscribers it was queued to. */
export function publish(topic: string, data: Data): number {
  // hostCall's work without its closure: a publish is per message.
  try {
    return hostTopics.publish(topic, toMessage(data), undefined);
  } catch (e) {
    throw fromHost(e);
  }
}

/** How many sockets of this process subscribe to `topic`. */
export function subscribers(topic: string): number {
  return hostTopics.subscribers(topic);
}

/** How long a topic keeps its messages, for {@link keep}. */
export interface Retention {
  /** The last this many messages (at most 1,000,000). */
  messages: number;
  /** …and only those younger than this; 0: no age limit. */
  seconds?: number;
  /** `"json"`: every delivered message is `{"offset":N,"epoch":"E","text":…}`,
   * so a client knows its position. */
  envelope?: "none" | "json";
}

/** Keep `topic`'s last messages, so a socket that comes back recovers what
 * it missed (`subscribeFrom` on its socket object). */
export function keep(topic: string, retention: Retention): void {
  hostCall(() =>
    hostHistory.keep(topic, {
      messages: retention.messages,
      seconds: retention.seconds ?? 0,
      envelope: retention.envelope ?? "none",
    }),
  );
}

/** Where `topic`'s history stands: the last offset and the epoch. */
export function currentPosition(topic: string): Position {
  return hostCall(() => hostHistory.currentPosition(topic));
}

/** A kept message read back by {@link read}. */
export interface Publication {
  offset: bigint;
  data: string | Uint8Array;
}

/** Up to `limit` kept messages of `topic` after offset `after`, oldest first,
 * and the epoch they belong to. */
export function read(topic: string, after: bigint, limit: number): { epoch: string; publications: Publication[] } {
  const page = hostCall(() => hostHistory.read(topic, after, limit));
  return {
    epoch: page.epoch,
    publications: page.publications.map((p) => ({ offset: p.offset, data: p.msg.val })),
  };
}

/** What `subscribeFrom` did: delivered `recovered` missed messages
 * first, or could not (`reset`: the socket gets only live ones from
 * `position` on). */
export type Recovery = { recovered: number } | { reset: Position };

/** A member of a topic's presence: the socket's id and the info it joined with. */
export interface Member {
  id: bigint;
  info: string;
}

/** `topic`'s members, by id: at most `limit` (≤ 1,000), after id `after`. */
export function members(topic: string, options: { after?: bigint; limit?: number } = {}): Member[] {
  return hostPresence
    .members(topic, options.after, options.limit ?? 1000)
    .map((m) => ({ id: m.conn, info: m.info }));
}

/** How many members `topic` has. */
export function count(topic: string): number {
  return hostPresence.count(topic);
}

/** Turn `topic`'s join and leave notices on or off: subscribers get
 * `{"join":{"conn":N,"info":"…"}}` and `{"leave":{"conn":N}}`. */
export function notices(topic: string, on: boolean): void {
  hostCall(() => hostPresence.notices(topic, on));
}

/** What a socket of either world does with topics; `id` is its connection. */
export abstract class Subscriber {
  /** The host's id of this socket. */
  abstract readonly id: bigint;

  /** Subscribe to `topic`; `false` if it already was. */
  subscribe(topic: string): boolean {
    return hostCall(() => hostTopics.subscribe(this.id, topic));
  }

  /** Unsubscribe from `topic`; `false` if it was not subscribed. */
  unsubscribe(topic: string): boolean {
    return hostCall(() => hostTopics.unsubscribe(this.id, topic));
  }

  /** Send `data` to every subscriber of `topic` but this socket (Bun's
   * rule); how many local subscribers it was queued to. */
  publish(topic: string, data: Data): number {
    try {
      return hostTopics.publish(topic, toMessage(data), this.id);
    } catch (e) {
      throw fromHost(e);
    }
  }

  /** Subscribe to a kept `topic` from `since` (the last position this
   * client saw): what it missed comes first, then the live messages. */
  subscribeFrom(topic: string, since?: Position): Recovery {
    const recovery: HostRecovery = hostCall(() => hostHistory.subscribeFrom(this.id, topic, since));
    return recovery.tag === "recovered" ? { recovered: recovery.val } : { reset: recovery.val };
  }

  /** Subscribe to `topic` and be listed in its presence with `info`. */
  join(topic: string, info = ""): boolean {
    return hostCall(() => hostPresence.join(this.id, topic, info));
  }
}
