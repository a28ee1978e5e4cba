"""Drives the ``wshost`` package's handler world for tests/sdk.rs: the
connection's id against the hub, a topic through the socket, and how the
peer closed, as ``recv`` and as iteration (``?iter``) see it."""

from wshost import Request, as_text, publish
from wshost.handler import App, hub, upgrade

app = App()
TOPIC = "probe"


@app.handler
def probe(req: Request) -> None:
    ws = upgrade(req)
    ws.subscribe(TOPIC)
    ws.send(f"{ws.id} {ws.id in hub.connections()}")
    if "iter" in req.query:
        for message in ws:
            publish(TOPIC, f"{ws.id}: {as_text(message)}")
        how = "iteration"
    else:
        while (received := ws.recv()) is not None:
            publish(TOPIC, f"{ws.id}: {as_text(received)}")
        how = "recv"
    info = ws.close_info
    closed = "no Close frame" if info is None else f"{info.code} {info.reason}"
    publish(TOPIC, f"{ws.id} closed, seen by {how}: {closed}")


WitWorld = app.WitWorld
