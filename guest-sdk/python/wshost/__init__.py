"""wshost: write wshost WebSocket handlers in Python.

- :mod:`wshost.events`: the event world, callbacks per event (``@app.on_message``);
- :mod:`wshost.handler`: the handler world, straight-line (``upgrade``, ``recv``, ``send``);
- :mod:`wshost.coro`: the coro world, the same as ``async def`` tasks;
- this module: what all three share: topics, history, presence, the
  request, HTTP responses and errors.

Each world's module imports only what its world provides; import the one
your component implements.
"""

from ._data import Data, Request, Response, as_text
from ._errors import (
    AlreadyAnswered,
    IoError,
    NotUpgraded,
    PeerClosed,
    ProtocolError,
    QueueFull,
    Timeout,
    TooLarge,
    UnknownConnection,
    WshostError,
)
from ._topics import (
    Member,
    Position,
    Publication,
    Recovered,
    Recovery,
    Reset,
    count,
    current_position,
    keep,
    members,
    notices,
    publish,
    read,
    subscribers,
)

__all__ = [
    "AlreadyAnswered",
    "Data",
    "IoError",
    "Member",
    "NotUpgraded",
    "PeerClosed",
    "Position",
    "ProtocolError",
    "Publication",
    "QueueFull",
    "Recovered",
    "Recovery",
    "Request",
    "Reset",
    "Response",
    "Timeout",
    "TooLarge",
    "UnknownConnection",
    "WshostError",
    "as_text",
    "count",
    "current_position",
    "keep",
    "members",
    "notices",
    "publish",
    "read",
    "subscribers",
]
