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

from collections.abc import Iterator
from typing import Callable

import wit_world
from componentize_py_types import Err
from wit_world.imports import connection, handshake, types

from ._data import Data, Headers, Request, Response, checked, frame_message, header_list, opcode_of, response_parts, to_bytes, uint
from ._errors import IoError, PeerClosed, drop_awaitable, failed, from_host, host_call, synchronous
from ._hub import hub
from ._topics import Subscriber

Opcode = types.Opcode
CloseInfo = types.CloseInfo


class WebSocket(Subscriber):
    """The upgraded connection. Iterating it yields each message until the peer closes."""

    # Each connection is an instance of its own, and each object or function
    # its first steps touch dirties a page of that instance's memory: so no
    # `__init__`, the id asked of the host when first wanted, and the loop
    # below calling the host itself (docs: benchmarks, "The guest SDKs").
    close_info: CloseInfo | None = None
    """How the peer closed, once ``recv`` returned ``None`` for its Close
    frame (``None`` when it vanished without one)."""
    _id: int | None = None

    @property
    def id(self) -> int:
        """The host's id of this connection, as other handlers see it in the hub."""
        if self._id is None:
            self._id = connection.id()
        return self._id

    @id.setter
    def id(self, value: int) -> None:
        # Only to keep `Subscriber.id` writable, as the other worlds' sockets set it.
        self._id = value

    def recv(self, timeout_ms: int | None = None) -> str | bytes | None:
        """The next message: text as ``str``, binary as ``bytes``; ``None``
        once the peer has closed. Raises :class:`~wshost.Timeout` after ``timeout_ms``."""
        if timeout_ms is not None:
            uint(timeout_ms, 32, "timeout_ms")
        try:
            # host_call's work, without its closure: a recv is per message.
            # Kept in step with `__iter__`, which does the same inline.
            frame = connection.recv(timeout_ms)
        except Err as e:
            raise from_host(e.value) from None
        message, self.close_info = frame_message(frame)
        return message

    def __iter__(self) -> Iterator[str | bytes]:
        # `recv`'s work, without calling it (see the class's comment).
        while True:
            try:
                frame = connection.recv(None)
            except Err as e:
                raise from_host(e.value) from None
            message, self.close_info = frame_message(frame)
            if message is None:
                return
            yield message

    def send(self, data: Data) -> None:
        """Send a whole message (``str`` as text, bytes as binary); waits while the socket is not writable."""
        payload = to_bytes(data)
        try:
            connection.push(payload, opcode_of(data), True)
        except Err as e:
            raise from_host(e.value) from None

    def push(self, data: Data, opcode: types.Opcode, fin: bool = True) -> None:
        """The seed's ``push(data, opcode, fin)``: one frame; ``fin=False``
        starts or continues a fragmented message (then ``Opcode.CONTINUATION``)."""
        host_call(lambda: connection.push(to_bytes(data), opcode, fin))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely, with a Close frame; nothing to do once the peer has gone."""
        uint(code, 16, "code")
        checked(reason, "reason")
        try:
            host_call(lambda: connection.push_close(code, reason))
        except PeerClosed:
            pass

    def terminate(self) -> None:
        """Drop the connection at once, without a Close frame (the seed's ``close()``)."""
        connection.close()


def upgrade(req: Request | None = None, protocol: str | None = None, headers: Headers | None = None) -> WebSocket:
    """Answer the request with ``101 Switching Protocols`` (naming ``protocol``,
    with extra ``headers``, when given): the connection, ready for ``recv`` and ``send``."""
    if protocol is None and headers is None:
        # host_call's work, without its closure (see WebSocket's comment).
        try:
            connection.upgrade()
        except Err as e:
            raise from_host(e.value) from None
    else:
        chosen = None if protocol is None else checked(protocol, "protocol")
        pairs = header_list(headers or {})
        host_call(lambda: handshake.upgrade_with(chosen, pairs))
    return WebSocket()


def respond(response: Response) -> None:
    """Answer the request over plain HTTP instead of upgrading it."""
    status, headers, body = response_parts(response)
    host_call(lambda: connection.respond(status, headers, body))


Handler = Callable[[Request], None]


class App:
    """The route's function, registered with ``@app.handler``; ``app.WitWorld``
    is the class componentize-py exports. A peer that goes away ends the
    function quietly; any other exception is logged with its traceback and
    the host answers 500 before the upgrade, closes with 1011 after it (the
    peer is told nothing of the exception)."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        app = self

        class World(wit_world.WitWorld):
            def handle(self, req: types.Request) -> None:
                if app._handler is None:
                    raise Err("no @app.handler")
                try:
                    returned = app._handler(Request(req))
                except (PeerClosed, IoError):
                    return  # the peer has gone: nothing to tell anyone
                except Exception:
                    raise failed("handler") from None
                if returned is not None:
                    drop_awaitable("handler", returned)

        self.WitWorld: type[wit_world.WitWorld] = World

    def handler(self, f: Handler) -> Handler:
        """The function that serves each connection (a plain ``def``: for
        ``async def`` handlers, ``wshost.coro``)."""
        self._handler = synchronous("handler", f)
        return f


__all__ = ["App", "CloseInfo", "Opcode", "WebSocket", "hub", "respond", "upgrade"]
