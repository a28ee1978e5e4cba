"""guests/recover-chat in Python (event world): a chat whose clients recover
what they missed while away. Its wire contract:

- a client connects to /chat, or /chat?since=OFFSET&epoch=EPOCH with the
  position of the last message it got;
- every text it sends is published to topic `chat`, which keeps its last
  10,000 messages;
- every message delivered to it is {"offset": N, "epoch": "E", "text": "..."}:
  first those after its position, then the live ones, none missing, none
  twice;
- when its position cannot be recovered its first frame is
  {"reset": true, "epoch": "E"}, then the live messages.

The host keeps the history, numbers the messages and writes the JSON: this
guest names the topic and passes the client's position on, from the request
to the open, in the socket's `data`."""

import sys

from wshost import Position, Request, Response, WshostError, keep, publish
from wshost.events import App, Socket, Upgrade

TOPIC = "chat"
app = App()
kept = False


@app.on_request
def arrives(req: Request) -> Upgrade | Response:
    query = req.query_params
    if "since" not in query or "epoch" not in query:
        return Upgrade()
    offset = query["since"]
    if not (offset.isascii() and offset.isdecimal() and int(offset) < 2**64):
        return Response("since: an offset (digits, at most 2^64 - 1)\n", status=400)
    return Upgrade(data={"offset": offset, "epoch": query["epoch"]})


@app.on_open
def opened(ws: Socket) -> None:
    global kept
    if not kept:
        kept = True
        try:
            keep(TOPIC, messages=10_000, envelope="json")
        except WshostError as e:
            print(f"keeping {TOPIC}: {e}", file=sys.stderr)
    since = None
    if ws.data is not None:
        since = Position(offset=int(ws.data["offset"]), epoch=ws.data["epoch"])
    try:
        ws.subscribe_from(TOPIC, since)
    except WshostError as e:
        print(f"subscribing to {TOPIC}: {e}", file=sys.stderr)
        ws.close(1011, "cannot subscribe")


@app.on_message
def said(ws: Socket, message: str | bytes) -> None:
    if isinstance(message, str):
        publish(TOPIC, message)


WitWorld = app.WitWorld
