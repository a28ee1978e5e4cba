"""Topics, history and presence: the host's publish/subscribe, shared by
every route and, on a cluster, every process. A socket subscribes through
its own object (``ws.subscribe``); anyone may publish.

Invariant: every function here exists in all three worlds (their WIT
imports ``topics``, ``history`` and ``presence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from componentize_py_types import Err
from wit_world.imports import history, presence, topics

from ._data import Data, checked, to_message, uint
from ._errors import from_host, host_call

Position = history.Position
"""Where a client left off in a kept topic: ``offset`` and ``epoch``."""


def publish(topic: str, data: Data) -> int:
    """Send ``data`` to every subscriber of ``topic``; the local subscribers it was queued to."""
    message = to_message(data)
    try:
        # host_call's work, without its closure: a publish is per message.
        return topics.publish(checked(topic, "topic"), message, None)
    except Err as e:
        raise from_host(e.value) from None


def subscribers(topic: str) -> int:
    """How many sockets of this process subscribe to ``topic``."""
    return topics.subscribers(checked(topic, "topic"))


def keep(topic: str, messages: int, seconds: int = 0, envelope: Literal["none", "json"] = "none") -> None:
    """Keep ``topic``'s last ``messages`` (younger than ``seconds``, 0: any age),
    so a socket that comes back recovers what it missed (``subscribe_from``).
    ``envelope="json"``: each delivered message is ``{"offset":N,"epoch":"E","text":...}``."""
    checked(topic, "topic")
    retention = history.Retention(uint(messages, 32, "messages"), uint(seconds, 32, "seconds"), history.Envelope.NONE)
    if envelope == "json":
        retention.envelope = history.Envelope.JSON
    host_call(lambda: history.keep(topic, retention))


def current_position(topic: str) -> Position:
    """Where ``topic``'s history stands: its last offset and epoch."""
    return host_call(lambda: history.current_position(checked(topic, "topic")))


@dataclass
class Publication:
    """A kept message read back by :func:`read`."""

    offset: int
    data: str | bytes


def read(topic: str, after: int, limit: int) -> tuple[str, list[Publication]]:
    """Up to ``limit`` kept messages of ``topic`` after offset ``after``, and their epoch."""
    checked(topic, "topic")
    uint(after, 64, "after")
    uint(limit, 32, "limit")
    page = host_call(lambda: history.read(topic, after, limit))
    return page.epoch, [Publication(p.offset, p.msg.value) for p in page.publications]


@dataclass
class Recovered:
    """``subscribe_from`` delivered ``count`` missed messages first."""

    count: int


@dataclass
class Reset:
    """``subscribe_from`` could not recover: only live messages, from ``position`` on."""

    position: Position


Recovery = Recovered | Reset


@dataclass
class Member:
    """A member of a topic's presence: the socket's id and its info."""

    id: int
    info: str


def members(topic: str, after: int | None = None, limit: int = 1000) -> list[Member]:
    """``topic``'s members by id: at most ``limit`` (≤ 1,000), after id ``after``."""
    checked(topic, "topic")
    if after is not None:
        uint(after, 64, "after")
    uint(limit, 32, "limit")
    return [Member(m.conn, m.info) for m in presence.members(topic, after, limit)]


def count(topic: str) -> int:
    """How many members ``topic`` has."""
    return presence.count(checked(topic, "topic"))


def notices(topic: str, on: bool) -> None:
    """Turn ``topic``'s join and leave notices on or off."""
    host_call(lambda: presence.notices(checked(topic, "topic"), on))


class Subscriber:
    """What a socket of any world does with topics; ``id`` is its connection."""

    id: int

    def subscribe(self, topic: str) -> bool:
        """Subscribe to ``topic``; ``False`` if it already was."""
        return host_call(lambda: topics.subscribe(self.id, checked(topic, "topic")))

    def unsubscribe(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; ``False`` if it was not subscribed."""
        return host_call(lambda: topics.unsubscribe(self.id, checked(topic, "topic")))

    def publish(self, topic: str, data: Data) -> int:
        """Send ``data`` to every subscriber of ``topic`` but this socket."""
        message = to_message(data)
        try:
            # host_call's work, without its closure: a publish is per message.
            return topics.publish(checked(topic, "topic"), message, self.id)
        except Err as e:
            raise from_host(e.value) from None

    def subscribe_from(self, topic: str, since: Position | None = None) -> Recovery:
        """Subscribe to a kept ``topic`` from ``since``: what was missed first, then live."""
        checked(topic, "topic")
        if since is not None:
            uint(since.offset, 64, "since.offset")
            checked(since.epoch, "since.epoch")
        recovery = host_call(lambda: history.subscribe_from(self.id, topic, since))
        if isinstance(recovery, history.Recovery_Recovered):
            return Recovered(recovery.value)
        return Reset(recovery.value)

    def join(self, topic: str, info: str = "") -> bool:
        """Subscribe to ``topic`` and be listed in its presence with ``info``."""
        checked(topic, "topic")
        checked(info, "info")
        return host_call(lambda: presence.join(self.id, topic, info))
