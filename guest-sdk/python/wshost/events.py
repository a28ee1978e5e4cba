"""The event world: one instance serves every socket of the route, and the
app's callbacks are called per event::

    from wshost.events import App, Socket

    app = App()

    @app.on_open
    def joined(ws: Socket) -> None:
        ws.subscribe("chat")

    @app.on_message
    def said(ws: Socket, message: str | bytes) -> None:
        ws.publish("chat", message)

    WitWorld = app.WitWorld  # what componentize-py exports

Invariant: a guest never handles a connection id. Each open socket has one
:class:`Socket`; what it was opened with (``data``, the remote address, the
subprotocol) lives in the host's attachment as JSON, so a fresh instance
after a trap sees the same values.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any, Callable, Literal

import wit_world
from wit_world.imports import event_types, sockets, types

from ._data import Data, Request, Response, to_bytes, to_message
from ._errors import host_call
from ._topics import Subscriber


class Socket(Subscriber):
    """One open socket."""

    def __init__(self, id: int) -> None:
        self.id = id
        """The host's id of this socket: for logs and presence lists."""
        self._saved: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._saved is None:
            attachment = sockets.attachment(self.id)
            self._saved = {} if attachment is None else json.loads(attachment)
        return self._saved

    @property
    def data(self) -> Any:
        """What ``on_request`` returned as ``data``. Assigning stores the new
        value in the host as JSON (at most 16 KiB); changing it in place
        changes only this instance's copy."""
        return self._load().get("d")

    @data.setter
    def data(self, value: Any) -> None:
        saved = {**self._load(), "d": value}
        host_call(lambda: sockets.set_attachment(self.id, json.dumps(saved).encode()))
        self._saved = saved

    @property
    def remote_address(self) -> str:
        """The peer's address, ``ip:port``."""
        return str(self._load().get("a", ""))

    @property
    def protocol(self) -> str | None:
        """The subprotocol ``on_request`` chose, or ``None``."""
        protocol = self._load().get("p")
        return None if protocol is None else str(protocol)

    @property
    def buffered_amount(self) -> int:
        """Bytes queued to the socket and not yet written."""
        return sockets.buffered_amount(self.id)

    def send(self, data: Data) -> Literal["queued", "backed-up"]:
        """Queue a message: ``"queued"``, or ``"backed-up"`` past the queue's
        soft limit (wait for ``on_drain``). Raises :class:`~wshost.QueueFull`
        when it overflowed (the host then closes the socket with 1008)."""
        status = host_call(lambda: sockets.send(self.id, to_message(data)))
        return "queued" if status == event_types.SendStatus.QUEUED else "backed-up"

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely: what is queued goes out, then a Close frame."""
        host_call(lambda: sockets.close(self.id, code, reason))

    def terminate(self) -> None:
        """Drop the connection at once, without a Close frame."""
        sockets.terminate(self.id)


class Upgrade:
    """What ``on_request`` returns to accept a socket: its ``data`` (any
    JSON value), and optionally the subprotocol and extra 101 headers."""

    def __init__(self, data: Any = None, protocol: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.data = data
        self.protocol = protocol
        self.headers = headers or {}


RequestHandler = Callable[[Request], "Upgrade | Response | None"]
OpenHandler = Callable[[Socket], None]
MessageHandler = Callable[[Socket, "str | bytes"], None]
CloseHandler = Callable[[Socket, int, str], None]


class App:
    """A route's callbacks, registered with decorators; all are optional.
    ``app.WitWorld`` is the class componentize-py exports."""

    def __init__(self) -> None:
        self._request: RequestHandler | None = None
        self._open: OpenHandler | None = None
        self._message: MessageHandler | None = None
        self._close: CloseHandler | None = None
        self._drain: OpenHandler | None = None
        self._sockets: dict[int, Socket] = {}
        app = self

        class World(wit_world.WitWorld):
            def on_request(self, conn: int, req: types.Request) -> event_types.Decision:
                return app._decide(Request(req))

            def on_open(self, conn: int) -> None:
                app._call("on_open", app._open, app._socket(conn))

            def on_message(self, conn: int, msg: event_types.Message) -> None:
                app._call("on_message", app._message, app._socket(conn), msg.value)

            def on_close(self, conn: int, code: int, reason: str) -> None:
                app._call("on_close", app._close, app._socket(conn), code, reason)
                app._sockets.pop(conn, None)

            def on_drain(self, conn: int) -> None:
                app._call("on_drain", app._drain, app._socket(conn))

        self.WitWorld: type[wit_world.WitWorld] = World

    def on_request(self, f: RequestHandler) -> RequestHandler:
        """Decide on a request: an :class:`Upgrade` (the default, also for
        ``None``) or a :class:`~wshost.Response` to answer over HTTP."""
        self._request = f
        return f

    def on_open(self, f: OpenHandler) -> OpenHandler:
        """The socket is open."""
        self._open = f
        return f

    def on_message(self, f: MessageHandler) -> MessageHandler:
        """A whole message: text as ``str``, binary as ``bytes``."""
        self._message = f
        return f

    def on_close(self, f: CloseHandler) -> CloseHandler:
        """The socket has closed (once per opened socket): the Close frame's
        code and reason, 1006 when there was none."""
        self._close = f
        return f

    def on_drain(self, f: OpenHandler) -> OpenHandler:
        """A socket whose ``send`` said ``"backed-up"`` has written its queue out."""
        self._drain = f
        return f

    def open_sockets(self) -> list[Socket]:
        """This route's open sockets."""
        return [self._socket(id) for id in sockets.open_sockets()]

    def _socket(self, conn: int) -> Socket:
        socket = self._sockets.get(conn)
        if socket is None:
            socket = self._sockets[conn] = Socket(conn)
        return socket

    def _decide(self, request: Request) -> event_types.Decision:
        try:
            decided = None if self._request is None else self._request(request)
        except Exception:
            _log("on_request")
            body = b"internal error\n"
            return event_types.Decision_Respond(event_types.Response(500, [], body))
        if isinstance(decided, Response):
            headers = list(decided.headers.items())
            response = event_types.Response(decided.status, headers, to_bytes(decided.body))
            return event_types.Decision_Respond(response)
        upgrade = decided or Upgrade()
        saved = {"d": upgrade.data, "a": request.remote_address, "p": upgrade.protocol}
        options = event_types.UpgradeOptions(
            protocol=upgrade.protocol,
            headers=list(upgrade.headers.items()),
            attachment=json.dumps(saved).encode(),
        )
        return event_types.Decision_Upgrade(options)

    @staticmethod
    def _call(what: str, callback: Callable[..., None] | None, *args: Any) -> None:
        # A callback that raises is logged; the socket stays open.
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            _log(what)


def _log(what: str) -> None:
    print(f"{what}: {traceback.format_exc().rstrip()}", file=sys.stderr)
