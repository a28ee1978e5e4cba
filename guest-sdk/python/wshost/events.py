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

Invariant: a guest needs no connection id (each open socket has one
:class:`Socket`; ``ws.id`` is there for logs). What a socket was opened with
(``data``, the remote address, the subprotocol) lives in the host's
attachment as JSON, so a fresh instance after a trap sees the same values;
the instance keeps only the address and subprotocol, so its memory does not
grow with what sockets carry.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Literal

import wit_world
from componentize_py_types import Err
from wit_world.imports import event_types, sockets, types

from ._data import Data, Headers, Request, Response, checked, header_list, response_parts, to_message, uint
from ._errors import PeerClosed, TooLarge, drop_awaitable, from_host, host_call, log_exception, synchronous
from ._topics import Subscriber


class Socket(Subscriber):
    """One open socket."""

    def __init__(self, id: int) -> None:
        self.id = id
        """The host's id of this socket: for logs and presence lists."""
        self._opened: tuple[str, str | None] | None = None

    def _load(self) -> dict[str, Any]:
        attachment = sockets.attachment(self.id)
        return {} if attachment is None else dict(json.loads(attachment))

    def _open(self) -> tuple[str, str | None]:
        # The address and subprotocol, read once.
        if self._opened is None:
            saved = self._load()
            protocol = saved.get("p")
            self._opened = (str(saved.get("a", "")), None if protocol is None else str(protocol))
        return self._opened

    @property
    def data(self) -> Any:
        """What ``on_request`` returned as ``data``, read from the host: each
        read is a fresh copy, so change it by assigning ``ws.data = …``, which
        stores the new value as JSON (at most 16 KiB with the address and
        subprotocol; past it :class:`~wshost.TooLarge`)."""
        return self._load().get("d")

    @data.setter
    def data(self, value: Any) -> None:
        address, protocol = self._open()
        encoded = _encode(value, address, protocol)
        host_call(lambda: sockets.set_attachment(self.id, encoded))

    @property
    def buffered_amount(self) -> int:
        """Bytes queued to the socket and not yet written."""
        return sockets.buffered_amount(self.id)

    def send(self, data: Data) -> Literal["queued", "backed-up"]:
        """Queue a message: ``"queued"``, or ``"backed-up"`` past the queue's
        soft limit (wait for ``on_drain``). Raises :class:`~wshost.QueueFull`
        when it overflowed (the host then closes the socket with 1008)."""
        message = to_message(data)
        try:
            # host_call's work, without its closure: a send is per message.
            status = sockets.send(self.id, message)
        except Err as e:
            raise from_host(e.value) from None
        return "queued" if status == event_types.SendStatus.QUEUED else "backed-up"

    @property
    def remote_address(self) -> str:
        """The peer's address, ``ip:port``."""
        return self._open()[0]

    @property
    def protocol(self) -> str | None:
        """The subprotocol ``on_request`` chose, or ``None``."""
        return self._open()[1]

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close politely: what is queued goes out, then a Close frame."""
        uint(code, 16, "code")
        checked(reason, "reason")
        host_call(lambda: sockets.close(self.id, code, reason))

    def terminate(self) -> None:
        """Drop the connection at once, without a Close frame."""
        sockets.terminate(self.id)


class Upgrade:
    """What ``on_request`` returns to accept a socket: its ``data`` (any
    JSON value), and optionally the subprotocol and extra 101 headers."""

    def __init__(self, data: Any = None, protocol: str | None = None, headers: Headers | None = None) -> None:
        self.data = data
        self.protocol = protocol
        self.headers: Headers = headers or {}


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
                # The hot path, spelled out: `wshost-bench sdk` counts every
                # call a message makes (see _call).
                callback = app._message
                if callback is None:
                    return
                socket = app._sockets.get(conn) or app._socket(conn)
                try:
                    returned = callback(socket, msg.value)
                except PeerClosed:
                    return
                except Exception:
                    log_exception("on_message")
                    return
                # `send` returns a status a lambda passes on: no call for it.
                if returned is not None and hasattr(type(returned), "__await__"):
                    drop_awaitable("on_message", returned)

            def on_close(self, conn: int, code: int, reason: str) -> None:
                app._call("on_close", app._close, app._socket(conn), code, reason)
                app._sockets.pop(conn, None)

            def on_drain(self, conn: int) -> None:
                app._call("on_drain", app._drain, app._socket(conn))

        self.WitWorld: type[wit_world.WitWorld] = World

    def on_request(self, f: RequestHandler) -> RequestHandler:
        """Decide on a request: an :class:`Upgrade` (the default, also for
        ``None``) or a :class:`~wshost.Response` to answer over HTTP."""
        self._request = synchronous("on_request", f)
        return f

    def on_open(self, f: OpenHandler) -> OpenHandler:
        """The socket is open."""
        self._open = synchronous("on_open", f)
        return f

    def on_message(self, f: MessageHandler) -> MessageHandler:
        """A whole message: text as ``str``, binary as ``bytes``."""
        self._message = synchronous("on_message", f)
        return f

    def on_close(self, f: CloseHandler) -> CloseHandler:
        """The socket has closed (once per opened socket): the Close frame's
        code and reason, 1006 when there was none."""
        self._close = synchronous("on_close", f)
        return f

    def on_drain(self, f: OpenHandler) -> OpenHandler:
        """A socket whose ``send`` said ``"backed-up"`` has written its queue out."""
        self._drain = synchronous("on_drain", f)
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
        # Whatever goes wrong in here answers 500 and is logged: an exception
        # out of the export would trap the instance every socket shares.
        try:
            decided = None if self._request is None else self._request(request)
            if isinstance(decided, Response):
                status, headers, body = response_parts(decided)
                return event_types.Decision_Respond(event_types.Response(status, headers, body))
            if decided is not None and not isinstance(decided, Upgrade):
                drop_awaitable("on_request", decided)
                raise TypeError(f"on_request returned {type(decided).__name__}: return an Upgrade, a Response or None")
            upgrade = decided or Upgrade()
            protocol = None if upgrade.protocol is None else checked(upgrade.protocol, "protocol")
            options = event_types.UpgradeOptions(
                protocol=protocol,
                headers=header_list(upgrade.headers),
                attachment=_encode(upgrade.data, request.remote_address, protocol),
            )
            return event_types.Decision_Upgrade(options)
        except Exception:
            log_exception("on_request")
            return event_types.Decision_Respond(event_types.Response(500, [], b"internal error\n"))

    @staticmethod
    def _call(what: str, callback: Callable[..., None] | None, *args: Any) -> None:
        # A callback that raises is logged and the socket stays open; a peer
        # that has gone is not worth a line.
        if callback is None:
            return
        try:
            returned = callback(*args)
        except PeerClosed:
            return
        except Exception:
            log_exception(what)
            return
        if returned is not None:
            drop_awaitable(what, returned)


#: The host's bound on a socket's attachment.
MAX_ATTACHMENT = 16 * 1024


def _encode(data: Any, address: str, protocol: str | None) -> bytes:
    # The attachment: compact JSON, within the host's bound.
    # ASCII JSON: a lone surrogate in the data is escaped, not an error.
    encoded = json.dumps({"d": data, "a": address, "p": protocol}, separators=(",", ":")).encode()
    if len(encoded) > MAX_ATTACHMENT:
        raise TooLarge(f"data is {len(encoded)} bytes as JSON; a socket keeps at most {MAX_ATTACHMENT}")
    return encoded

