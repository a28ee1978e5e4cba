"""The seed's second example in Python: each message `X` is pushed as
`Сервер：X` to every live connection of the route. The host's hub keeps the
list of connections, so nothing here has to remove itself."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import connection, hub
from wit_world.imports.types import Opcode, Request


class WitWorld(wit_world.WitWorld):
    def handle(self, req: Request) -> None:
        connection.upgrade()
        while True:
            try:
                frame = connection.recv(None)
            except Err as e:
                print(f"errorCode: {e.value}", file=sys.stderr)
                break
            if frame is None:
                break
            if frame.opcode == Opcode.CLOSE or frame.data == b"close":
                break
            data = frame.data.decode("utf-8", errors="replace")
            hub.broadcast(f"Сервер：{data}".encode(), Opcode.TEXT)
        connection.close()
