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
guest names the topic and passes the client's position on (in the socket's
attachment, from the request to the open)."""

import sys
from urllib.parse import parse_qs

import wit_world
from componentize_py_types import Err
from wit_world.imports import history, sockets, topics
from wit_world.imports.event_types import (
    Decision,
    Decision_Respond,
    Decision_Upgrade,
    Message,
    Message_Text,
    Response,
    UpgradeOptions,
)
from wit_world.imports.types import Request

TOPIC = "chat"
KEEP = 10_000


class WitWorld(wit_world.WitWorld):
    kept = False

    def on_request(self, conn: int, req: Request) -> Decision:
        query = parse_qs(req.query)
        since = None
        if "since" in query and "epoch" in query:
            offset, epoch = query["since"][0], query["epoch"][0]
            if not offset.isdigit():
                body = b"since: an offset (digits)\n"
                return Decision_Respond(Response(status=400, headers=[], body=body))
            since = f"{offset} {epoch}".encode()
        return Decision_Upgrade(UpgradeOptions(protocol=None, headers=[], attachment=since))

    def on_open(self, conn: int) -> None:
        if not WitWorld.kept:
            WitWorld.kept = True
            retention = history.Retention(messages=KEEP, seconds=0, envelope=history.Envelope.JSON)
            try:
                history.keep(TOPIC, retention)
            except Err as e:
                print(f"keeping {TOPIC}: {e.value}", file=sys.stderr)
        since = None
        saved = sockets.attachment(conn)
        if saved is not None:
            offset, epoch = saved.decode().split(" ", 1)
            since = history.Position(offset=int(offset), epoch=epoch)
        try:
            history.subscribe_from(conn, TOPIC, since)
        except Err as e:
            print(f"subscribing to {TOPIC}: {e.value}", file=sys.stderr)
            try:
                sockets.close(conn, 1011, "cannot subscribe")
            except Err:
                pass

    def on_message(self, conn: int, msg: Message) -> None:
        if not isinstance(msg, Message_Text):
            return
        try:
            topics.publish(TOPIC, msg, None)
        except Err as e:
            print(f"publishing to {TOPIC}: {e.value}", file=sys.stderr)

    def on_close(self, conn: int, code: int, reason: str) -> None:
        pass

    def on_drain(self, conn: int) -> None:
        pass
