"""The seed's broadcast in event style: each message `X` is pushed as
`Сервер：X` to every open socket of the route, the sender included. One
instance serves them all; the host keeps the topic, so a socket leaves it
when it closes."""

from wshost import as_text, publish
from wshost.events import App, Socket

ROOM = "chat"
app = App()


@app.on_open
def joined(ws: Socket) -> None:
    ws.subscribe(ROOM)


@app.on_message
def said(ws: Socket, message: str | bytes) -> None:
    data = as_text(message)
    # As the seed: the text `close` drops the connection.
    if data == "close":
        ws.terminate()
        return
    publish(ROOM, f"Сервер：{data}")


WitWorld = app.WitWorld
