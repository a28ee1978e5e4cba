"""The seed's second example as a coroutine in Python: each message `X` is
pushed as `Сервер：X` to every live connection of the route (the host's hub
keeps the list). One instance serves every connection as an asyncio task."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import coro_connection as ws
from wit_world.imports import hub
from wit_world.imports.types import Opcode, Request


class WitWorld(wit_world.WitWorld):
    async def serve(self, conn: int, req: Request) -> None:
        await ws.upgrade(conn, None, [])
        del req  # a waiting task keeps what it holds
        while True:
            try:
                frame = await ws.recv(conn, None)
            except Err as e:
                print(f"errorCode: {e.value}", file=sys.stderr)
                break
            if frame is None:
                break
            if frame.opcode == Opcode.CLOSE or frame.data == b"close":
                break
            data = frame.data.decode("utf-8", errors="replace")
            hub.broadcast(f"Сервер：{data}".encode(), Opcode.TEXT)
        await ws.close(conn)
