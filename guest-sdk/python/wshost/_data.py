"""What a guest sends and receives: ``str`` is a text message, bytes
(``bytes``, ``bytearray``, ``memoryview``) a binary one; the request that
opens a socket and the plain HTTP response that may answer it instead.

Invariant: text stays text and bytes stay bytes in both directions; header
names compare case-insensitively, as HTTP says. What goes to the host is
checked here first (text that is not Unicode, a number out of its WIT
type's range): componentize-py would trap the instance on it, so the SDK
raises ``ValueError`` instead, which the guest's code can catch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from wit_world.imports import event_types, types

Data = str | bytes | bytearray | memoryview
"""A message to send: text as ``str``, binary as bytes."""

Headers = dict[str, str] | list[tuple[str, str]]
"""HTTP headers: a dict, or a list of pairs when a name repeats (``set-cookie``)."""


def checked(text: str, what: str) -> str:
    """``text``, if it can cross to the host: Unicode without lone surrogates
    (``json.loads`` makes those from ``"\\ud800"``)."""
    if not isinstance(text, str):
        raise TypeError(f"{what}: a str, not {type(text).__name__}")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what}: not valid Unicode (a lone surrogate)") from None
    return text


def uint(value: int, bits: int, what: str) -> int:
    """``value``, if it fits the WIT's unsigned integer of ``bits`` bits."""
    if not isinstance(value, int):
        raise TypeError(f"{what}: an int, not {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what}: {value} is not a u{bits}")
    return value


def header_list(headers: Headers) -> list[tuple[str, str]]:
    """``headers`` as the WIT's list of pairs, checked."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    return [(checked(n, "header name"), checked(v, "header value")) for n, v in pairs]


def to_bytes(data: Data) -> bytes:
    """``data`` as bytes (text as UTF-8)."""
    if isinstance(data, str):
        return checked(data, "text").encode()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        # bytes(n) would be n zero bytes: a number is a mistake, not data.
        raise TypeError(f"data: str or bytes, not {type(data).__name__}")
    return bytes(data)


def to_message(data: Data) -> event_types.Message:
    """``data`` as the WIT's message: text for ``str``, binary otherwise."""
    if isinstance(data, str):
        return event_types.Message_Text(checked(data, "text"))
    return event_types.Message_Binary(to_bytes(data))


def opcode_of(data: Data) -> types.Opcode:
    """The frame opcode that sends ``data`` whole: text for ``str``."""
    return types.Opcode.TEXT if isinstance(data, str) else types.Opcode.BINARY


def frame_message(frame: types.Frame | None) -> tuple[str | bytes | None, types.CloseInfo | None]:
    """What ``recv`` got, as the guest sees it: the message (``None`` once
    the peer has closed) and, for the peer's Close frame, its code and reason."""
    if frame is None:
        return None, None
    if frame.opcode == types.Opcode.CLOSE:
        return None, frame.close or types.CloseInfo(1005, "")
    if frame.opcode == types.Opcode.TEXT:
        return frame.data.decode("utf-8", errors="replace"), None
    return frame.data, None


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
        """Every header in order, names in lower case."""
        self.remote_address: str = req.remote_addr
        """The peer's address, ``ip:port``."""

    def header(self, name: str) -> str | None:
        """The first header named ``name`` (any case), or ``None``."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n.lower() == wanted), None)

    @property
    def query_params(self) -> dict[str, str]:
        """The query's parameters (the last of a repeated name)."""
        params = {}
        for pair in self.query.split("&"):
            if pair:
                name, _, value = pair.partition("=")
                params[_unquote(name)] = _unquote(value)
        return params

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
    headers: Headers = field(default_factory=dict)


def response_parts(response: Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """``response`` as the WIT's status, headers and body, checked."""
    return uint(response.status, 16, "status"), header_list(response.headers), to_bytes(response.body)


def _unquote(text: str) -> str:
    # A query's `+` and `%XX` (urllib.parse's unquote_plus, without
    # importing it: see _errors); a bad escape stays as it is.
    text = text.replace("+", " ")
    if "%" not in text:
        return text
    raw = text.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and _is_hex(raw[i + 1 : i + 3]):
            out += bytes.fromhex(raw[i + 1 : i + 3].decode())
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)
