"""The seed's second example as a coroutine: each message `X` is pushed as
`Сервер：X` to every live connection of the route (the host's hub keeps the
list). One instance serves every connection as an asyncio task."""

from wshost import Request, as_text
from wshost.coro import App, hub, upgrade

app = App()


@app.handler
async def broadcast(req: Request) -> None:
    ws = await upgrade(req)
    del req  # a waiting task keeps what it holds
    async for message in ws:
        data = as_text(message)
        if data == "close":
            break
        hub.broadcast(f"Сервер：{data}")
    await ws.terminate()


WitWorld = app.WitWorld
