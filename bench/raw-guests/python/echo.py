"""The seed's first example in Python: `Привет, X!` then `Как ты там, X?` for
every message; the text `close` or a Close frame ends it without a Close frame."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import connection
from wit_world.imports.types import Frame, Opcode, Request


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> None:
        connection.upgrade()
        while True:
            try:
                frame = connection.recv(None)
            except Err as e:
                # The seed's `false`: log the error and drop the connection.
                print(f"errorCode: {e.value}", file=sys.stderr)
                break
            if frame is None:  # the peer has gone (the seed's '')
                break
            if frame.opcode == Opcode.CLOSE or frame.data == b"close":
                break
            data = frame.data.decode("utf-8", errors="replace")
            push_text(f"Привет, {data}!")
            push_text(f"Как ты там, {data}?")
        connection.close()


def push_text(text: str) -> None:
    connection.push(text.encode(), Opcode.TEXT, True)
