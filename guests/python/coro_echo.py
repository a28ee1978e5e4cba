"""The seed's first example as a coroutine: `Привет, X!` then `Как ты там,
X?` for every message; the text `close` or a Close frame ends it without a
Close frame. Each connection is an `async def` task of one instance
(componentize-py's asyncio loop), so a waiting connection costs a task, not
an interpreter."""

import sys

from wshost import Request, WshostError, as_text
from wshost.coro import App, upgrade

app = App()


@app.handler
async def echo(req: Request) -> None:
    ws = await upgrade(req)
    del req  # a waiting task keeps what it holds
    try:
        async for message in ws:
            data = as_text(message)
            if data == "close":
                break
            await ws.send(f"Привет, {data}!")
            await ws.send(f"Как ты там, {data}?")
    except WshostError as e:
        # The seed's `false`: log the error and drop the connection.
        print(f"errorCode: {e}", file=sys.stderr)
    await ws.terminate()


WitWorld = app.WitWorld
