"""The seed's broadcast in event style: each message `X` is pushed as
`Сервер：X` to every open socket of the route, the sender included. One
instance serves them all; the host keeps the topic, so a socket leaves it
when it closes."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import sockets, topics
from wit_world.imports.event_types import (
    Decision,
    Decision_Upgrade,
    Message,
    Message_Text,
    UpgradeOptions,
)
from wit_world.imports.types import Request

ROOM = "chat"


class WitWorld(wit_world.WitWorld):
    def on_request(self, conn: int, req: Request) -> Decision:
        return Decision_Upgrade(UpgradeOptions(protocol=None, headers=[], attachment=None))

    def on_open(self, conn: int) -> None:
        try:
            topics.subscribe(conn, ROOM)
        except Err as e:
            print(f"errorCode: {e.value}", file=sys.stderr)
            sockets.terminate(conn)

    def on_message(self, conn: int, msg: Message) -> None:
        if isinstance(msg, Message_Text):
            text = msg.value
        else:
            text = msg.value.decode("utf-8", errors="replace")
        # As the seed: the text `close` drops the connection.
        if text == "close":
            sockets.terminate(conn)
            return
        try:
            topics.publish(ROOM, Message_Text(f"Сервер：{text}"), None)
        except Err as e:
            print(f"errorCode: {e.value}", file=sys.stderr)

    def on_close(self, conn: int, code: int, reason: str) -> None:
        pass

    def on_drain(self, conn: int) -> None:
        pass
