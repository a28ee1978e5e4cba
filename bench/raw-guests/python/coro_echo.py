"""The seed's first example as a coroutine in Python: `Привет, X!` then
`Как ты там, X?` for every message; the text `close` or a Close frame ends
it without a Close frame. Each connection is an `async def serve` task of
one instance (componentize-py's asyncio loop), so a waiting connection costs
a task, not an interpreter."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import coro_connection as ws
from wit_world.imports.types import Opcode, Request


class WitWorld(wit_world.WitWorld):
    async def serve(self, conn: int, req: Request) -> None:
        await ws.upgrade(conn, None, [])
        del req  # a waiting task keeps what it holds
        while True:
            try:
                frame = await ws.recv(conn, None)
            except Err as e:
                # The seed's `false`: log the error and drop the connection.
                print(f"errorCode: {e.value}", file=sys.stderr)
                break
            if frame is None:  # the peer has gone (the seed's '')
                break
            if frame.opcode == Opcode.CLOSE or frame.data == b"close":
                break
            data = frame.data.decode("utf-8", errors="replace")
            await ws.push(conn, f"Привет, {data}!".encode(), Opcode.TEXT, True)
            await ws.push(conn, f"Как ты там, {data}?".encode(), Opcode.TEXT, True)
        await ws.close(conn)
