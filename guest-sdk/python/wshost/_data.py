"""What a guest sends and receives: ``str`` is a text message, bytes
(``bytes``, ``bytearray``, ``memoryview``) a binary one; the request that
opens a socket and the plain HTTP response that may answer it instead.

Invariant: text stays text and bytes stay bytes in both directions; header
names compare case-insensitively, as HTTP says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from wit_world.imports import event_types, types

Data = str | bytes | bytearray | memoryview
"""A message to send: text as ``str``, binary as bytes."""


def to_bytes(data: Data) -> bytes:
    """``data`` as bytes (text as UTF-8)."""
    return data.encode() if isinstance(data, str) else bytes(data)


def to_message(data: Data) -> event_types.Message:
    """``data`` as the WIT's message: text for ``str``, binary otherwise."""
    if isinstance(data, str):
        return event_types.Message_Text(data)
    return event_types.Message_Binary(bytes(data))


def as_text(message: str | bytes) -> str:
    """A received message as text: binary decoded as UTF-8 (invalid sequences replaced)."""
    return message if isinstance(message, str) else message.decode("utf-8", errors="replace")


class Request:
    """The HTTP request as the host received it."""

    def __init__(self, req: types.Request) -> None:
        self.method: str = req.method
        """``GET``, normally."""
        self.path: str = req.path
        """The path without the query: ``/chat``."""
        self.query: str = req.query
        """The query without its ``?``; empty when there is none."""
        self.headers: list[tuple[str, str]] = req.headers
        """Every header in order, names as the client sent them."""
        self.remote_address: str = req.remote_addr
        """The peer's address, ``ip:port``."""

    def header(self, name: str) -> str | None:
        """The first header named ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    @property
    def query_params(self) -> dict[str, str]:
        """The query's parameters (the last of a repeated name)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def protocols(self) -> list[str]:
        """The subprotocols the client offered, in its order."""
        offered = (v for n, v in self.headers if n.lower() == "sec-websocket-protocol")
        return [p.strip() for v in offered for p in v.split(",") if p.strip()]


@dataclass
class Response:
    """A plain HTTP answer instead of an upgrade: ``Response("no", status=403)``."""

    body: Data = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
