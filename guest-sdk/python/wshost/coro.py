"""The coro world: straight-line handlers as ``async def`` tasks of one
instance, so thousands of connections share one interpreter::

    from wshost import Request
    from wshost.coro import App, upgrade

    app = App()

    @app.handler
    async def echo(req: Request) -> None:
        ws = await upgrade(req)
        async for message in ws:
            await ws.send(message)

    WitWorld = app.WitWorld  # what componentize-py exports

Invariant: a task touches only its own connection (its request carries the
id; :func:`upgrade` and :func:`respond` answer it, at most once between them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import wit_world
from componentize_py_types import Err
from wit_world.imports import coro_connection as connection, types

from ._data import Data, Headers, Request, Response, checked, frame_message, header_list, opcode_of, response_parts, to_bytes, uint
from ._errors import IoError, PeerClosed, from_host, failed
from ._hub import hub
from ._topics import Subscriber

Opcode = types.Opcode
CloseInfo = types.CloseInfo
T = TypeVar("T")


async def _host(call: Awaitable[T]) -> T:
    try:
        return await call
    except Err as e:
        raise from_host(e.value) from None


class CoroRequest(Request):
    """A :class:`~wshost.Request` that knows its connection."""

    def __init__(self, conn: int, req: types.Request) -> None:
        super().__init__(req)
        self.id = conn


class WebSocket(Subscriber):
    """The upgraded connection. ``async for`` yields each message until the peer closes."""

    def __init__(self, id: int) -> None:
        self.id = id
        self.close_info: CloseInfo | None = None
        """How the peer closed, once ``recv`` returned ``None`` for its Close
        frame (``None`` when it vanished without one)."""

    async def recv(self, timeout_ms: int | None = None) -> str | bytes | None:
        """The next message: text as ``str``, binary as ``bytes``; ``None`` once
        the peer has closed. Raises :class:`~wshost.Timeout` after ``timeout_ms``."""
        if timeout_ms is not None:
            uint(timeout_ms, 32, "timeout_ms")
        message, self.close_info = frame_message(await _host(connection.recv(self.id, timeout_ms)))
        return message

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while (message := await self.recv()) is not None:
            yield message

    async def send(self, data: Data) -> None:
        """Send a whole message (``str`` as text, bytes as binary)."""
        await _host(connection.push(self.id, to_bytes(data), opcode_of(data), True))

    async def push(self, data: Data, opcode: types.Opcode, fin: bool = True) -> None:
        """The seed's ``push(data, opcode, fin)``: one frame."""
        await _host(connection.push(self.id, to_bytes(data), opcode, fin))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely, with a Close frame; nothing to do once the peer has gone."""
        uint(code, 16, "code")
        checked(reason, "reason")
        try:
            await _host(connection.push_close(self.id, code, reason))
        except PeerClosed:
            pass

    async def terminate(self) -> None:
        """Drop the connection at once, without a Close frame (the seed's ``close()``)."""
        await connection.close(self.id)


def _conn(req: Request) -> int:
    if not isinstance(req, CoroRequest):
        raise TypeError("a coro-world request comes from @app.handler")
    return req.id


async def upgrade(req: Request, protocol: str | None = None, headers: Headers | None = None) -> WebSocket:
    """Answer ``req`` with ``101 Switching Protocols``: the connection."""
    conn = _conn(req)
    chosen = None if protocol is None else checked(protocol, "protocol")
    await _host(connection.upgrade(conn, chosen, header_list(headers or {})))
    return WebSocket(conn)


async def respond(req: Request, response: Response) -> None:
    """Answer ``req`` over plain HTTP instead of upgrading it."""
    status, headers, body = response_parts(response)
    await _host(connection.respond(_conn(req), status, headers, body))


Handler = Callable[[Request], Awaitable[None]]


class App:
    """The route's ``async`` function, registered with ``@app.handler``;
    ``app.WitWorld`` is the class componentize-py exports."""

    def __init__(self) -> None:
        self._handler: Handler | None = None
        app = self

        class World(wit_world.WitWorld):
            async def serve(self, conn: int, req: types.Request) -> None:
                if app._handler is None:
                    raise Err("no @app.handler")
                try:
                    # The task keeps only what the handler keeps (it may
                    # drop its request once upgraded): this frame lets go.
                    task = app._handler(CoroRequest(conn, req))
                    del req
                    await task
                except (PeerClosed, IoError):
                    pass  # the peer has gone: nothing to tell anyone
                except Exception:
                    raise failed("handler") from None

        self.WitWorld: type[wit_world.WitWorld] = World

    def handler(self, f: Handler) -> Handler:
        """The ``async`` function that serves each connection."""
        self._handler = f
        return f


__all__ = ["App", "CloseInfo", "Opcode", "WebSocket", "hub", "respond", "upgrade"]
