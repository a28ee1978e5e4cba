"""The handler world as straight-line code: one instance per connection,
and the app's function runs from the request to the end of the connection::

    from wshost import Request
    from wshost.handler import App, upgrade

    app = App()

    @app.handler
    def echo(req: Request) -> None:
        ws = upgrade(req)
        for message in ws:
            ws.send(message)

    WitWorld = app.WitWorld  # what componentize-py exports

Invariant: the connection is this instance's own; :func:`upgrade` and
:func:`respond` answer its request, at most once between them.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from typing import Callable

import wit_world
from componentize_py_types import Err
from wit_world.imports import connection, handshake, types

from ._data import Data, Request, Response, to_bytes
from ._errors import PeerClosed, host_call
from ._hub import hub
from ._topics import Subscriber

Opcode = types.Opcode
CloseInfo = types.CloseInfo


class WebSocket(Subscriber):
    """The upgraded connection. Iterating it yields each message until the peer closes."""

    def __init__(self) -> None:
        self.id = connection.id()
        """The host's id of this connection, as other handlers see it in the hub."""
        self.close_info: CloseInfo | None = None
        """How the peer closed, once ``recv`` returned ``None`` for its Close frame."""

    def recv(self, timeout_ms: int | None = None) -> str | bytes | None:
        """The next message: text as ``str``, binary as ``bytes``; ``None``
        once the peer has closed. Raises :class:`~wshost.Timeout` after ``timeout_ms``."""
        frame = host_call(lambda: connection.recv(timeout_ms))
        if frame is None:
            return None
        if frame.opcode == Opcode.CLOSE:
            self.close_info = frame.close or CloseInfo(1005, "")
            return None
        if frame.opcode == Opcode.TEXT:
            return frame.data.decode("utf-8", errors="replace")
        return frame.data

    def __iter__(self) -> Iterator[str | bytes]:
        while (message := self.recv()) is not None:
            yield message

    def send(self, data: Data) -> None:
        """Send a whole message (``str`` as text, bytes as binary); waits while the socket is not writable."""
        op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
        host_call(lambda: connection.push(to_bytes(data), op, True))

    def push(self, data: Data, opcode: types.Opcode, fin: bool = True) -> None:
        """The seed's ``push(data, opcode, fin)``: one frame; ``fin=False``
        starts or continues a fragmented message (then ``Opcode.CONTINUATION``)."""
        host_call(lambda: connection.push(to_bytes(data), opcode, fin))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely, with a Close frame."""
        host_call(lambda: connection.push_close(code, reason))

    def terminate(self) -> None:
        """Drop the connection at once, without a Close frame (the seed's ``close()``)."""
        connection.close()


def upgrade(req: Request | None = None, protocol: str | None = None, headers: dict[str, str] | None = None) -> WebSocket:
    """Answer the request with ``101 Switching Protocols`` (naming ``protocol``,
    with extra ``headers``, when given): the connection, ready for ``recv`` and ``send``."""
    if protocol is None and headers is None:
        host_call(connection.upgrade)
    else:
        host_call(lambda: handshake.upgrade_with(protocol, list((headers or {}).items())))
    return WebSocket()


def respond(response: Response) -> None:
    """Answer the request over plain HTTP instead of upgrading it."""
    headers = list(response.headers.items())
    host_call(lambda: connection.respond(response.status, headers, to_bytes(response.body)))


Handler = Callable[[Request], None]


class App:
    """The route's function, registered with ``@app.handler``; ``app.WitWorld``
    is the class componentize-py exports. A peer that goes away ends the
    function quietly; any other exception is logged and, after the upgrade,
    the host closes with 1011."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        app = self

        class World(wit_world.WitWorld):
            def handle(self, req: types.Request) -> None:
                if app._handler is None:
                    raise RuntimeError("no @app.handler")
                try:
                    app._handler(Request(req))
                except PeerClosed:
                    pass
                except Exception as e:
                    print(traceback.format_exc().rstrip(), file=sys.stderr)
                    raise Err(f"{type(e).__name__}: {e}") from None

        self.WitWorld: type[wit_world.WitWorld] = World

    def handler(self, f: Handler) -> Handler:
        """The function that serves each connection."""
        self._handler = f
        return f


__all__ = ["App", "CloseInfo", "Opcode", "WebSocket", "hub", "respond", "upgrade"]
