"""The hub of the handler and coro worlds: the ids of a route's open
connections, and sending to them by id. Invariant: only those two worlds
import it (the event world has no hub; its sockets are objects).
"""

from __future__ import annotations

from wit_world.imports import hub as host_hub

from ._data import Data, opcode_of, to_bytes, uint
from ._errors import host_call


class hub:
    """Every connection of this route: their ids, and sending to them by id."""

    @staticmethod
    def connections() -> list[int]:
        """The ids of the route's open connections."""
        return host_hub.connections()

    @staticmethod
    def send_to(id: int, data: Data) -> None:
        """Queue ``data`` to connection ``id``."""
        uint(id, 64, "id")
        host_call(lambda: host_hub.send_to(id, to_bytes(data), opcode_of(data)))

    @staticmethod
    def broadcast(data: Data) -> int:
        """Queue ``data`` to every open connection of the route; to how many."""
        return host_call(lambda: host_hub.broadcast(to_bytes(data), opcode_of(data)))


__all__ = ["hub"]
