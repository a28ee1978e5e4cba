"""The host's errors as Python exceptions.

Every call into the host that fails raises a :class:`WshostError` whose
``code`` is the WIT's name for the reason and whose subclass lets an
``except`` pick it out. Invariant: componentize-py's raw ``Err`` never
reaches the guest's code; :func:`host_call` converts it.
"""

from __future__ import annotations

# What the SDK imports, every instance carries: `wshost-bench sdk` measured
# traceback and urllib.parse at ~0.5 MiB more RSS per handler-world
# connection, so neither is imported up front.

import sys
from typing import Callable, TypeVar

from componentize_py_types import Err
from wit_world.imports import types

T = TypeVar("T")


class WshostError(Exception):
    """A call into wshost failed: ``code`` says why, ``detail`` in the host's words."""

    code: str = "error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(self.code if detail is None else f"{self.code}: {detail}")
        self.detail = detail


class Timeout(WshostError, TimeoutError):
    """A wait (``recv`` with a timeout) ran out."""

    code = "timeout"


class PeerClosed(WshostError, ConnectionError):
    """The peer has gone: nothing more can be sent or received."""

    code = "peer-closed"


class NotUpgraded(WshostError):
    """The call needs an upgraded connection (``upgrade`` first)."""

    code = "not-upgraded"


class AlreadyAnswered(WshostError):
    """The request was already upgraded or answered."""

    code = "already-answered"


class TooLarge(WshostError):
    """Over one of the host's bounds (message size, attachment, info)."""

    code = "too-large"


class ProtocolError(WshostError):
    """The call broke a rule of the protocol; ``detail`` says which."""

    code = "protocol"


class IoError(WshostError):
    """The network or the host failed; ``detail`` says how."""

    code = "io"


class UnknownConnection(WshostError):
    """The socket named is not open (any more)."""

    code = "unknown-connection"


class QueueFull(WshostError):
    """The socket's queue overflowed: the host closes it with 1008."""

    code = "queue-full"


def from_host(error: types.Error) -> WshostError:
    """The WIT error variant as its exception."""
    match error:
        case types.Error_Timeout():
            return Timeout()
        case types.Error_PeerClosed():
            return PeerClosed()
        case types.Error_NotUpgraded():
            return NotUpgraded()
        case types.Error_AlreadyAnswered():
            return AlreadyAnswered()
        case types.Error_TooLarge():
            return TooLarge()
        case types.Error_Protocol(value=detail):
            return ProtocolError(detail)
        case types.Error_Io(value=detail):
            return IoError(detail)
        case types.Error_UnknownConnection():
            return UnknownConnection()
        case types.Error_QueueFull():
            return QueueFull()
    return WshostError(repr(error))


def host_call(call: Callable[[], T]) -> T:
    """Run ``call``, raising a failed host call's error as a :class:`WshostError`."""
    try:
        return call()
    except Err as e:
        raise from_host(e.value) from None


#: ``co_flags`` of the functions whose call runs none of their body: an
#: ``async def`` (``CO_COROUTINE``), a generator (``CO_GENERATOR``), a
#: ``types.coroutine`` generator (``CO_ITERABLE_COROUTINE``) and an async
#: generator (``CO_ASYNC_GENERATOR``); read without importing ``inspect``.
_ASYNC_FLAGS = 0x80 | 0x100 | 0x200
_GENERATOR_FLAGS = 0x20

F = TypeVar("F", bound=Callable[..., object])


def synchronous(what: str, f: F) -> F:
    """``f``, which the host calls synchronously: an ``async def`` or a
    generator function is a ``TypeError`` where it is registered, at build
    time (called, it would return a coroutine or a generator and run none of
    its body)."""
    flags = getattr(getattr(f, "__code__", None), "co_flags", 0)
    if flags & (_ASYNC_FLAGS | _GENERATOR_FLAGS):
        name = getattr(f, "__name__", "the function")
        kind = "an async def" if flags & _ASYNC_FLAGS else "a generator function"
        raise TypeError(f"{what}: {name} is {kind}; this world calls plain functions (its body would never run)")
    return f


def drop_awaitable(what: str, returned: object) -> None:
    """What a synchronous callback returned, when it is not ``None``: an
    awaitable (a coroutine, most likely, from a plain function that called
    an ``async def``) is logged and, if it can be, closed unrun. Never
    raises: the event world's instance is every socket's."""
    if not hasattr(type(returned), "__await__"):
        return
    try:
        close = getattr(returned, "close", None)
        if callable(close):
            close()
    except Exception:
        pass
    print(
        f"{what}: returned an awaitable ({type(returned).__name__}) that nothing awaits; callbacks must be synchronous",
        file=sys.stderr,
    )


def log_exception(what: str) -> None:
    """Log the exception being handled, with its traceback, as ``what: …``."""
    print(f"{what}:", file=sys.stderr)
    # The interpreter's own printer (a CPython that wants the `traceback`
    # module for it loads it then, once an exception is logged).
    sys.excepthook(*sys.exc_info())


def failed(what: str) -> Err[str]:
    """Log the exception being handled, with its traceback; the export's
    ``err``, which tells the peer nothing of it."""
    log_exception(what)
    return Err("handler failed")
