"""The seed's second example: each message `X` is pushed as `Сервер：X` to
every live connection of the route. The host's hub keeps the list of
connections, so nothing here has to remove itself."""

from wshost import Request, as_text
from wshost.handler import App, hub, upgrade

app = App()


@app.handler
def broadcast(req: Request) -> None:
    ws = upgrade(req)
    for message in ws:
        data = as_text(message)
        if data == "close":
            break
        hub.broadcast(f"Сервер：{data}")
    ws.terminate()


WitWorld = app.WitWorld
