"""Drives the `wshost` package's event world for tests/sdk.rs: the request
and its HTTP answer, `data` kept in the host, errors with a code, a
callback that raises, one that returns a coroutine, an ``async def`` refused."""

import json
from typing import Any, cast

from wshost import Request, Response, WshostError, subscribers
from wshost.events import App, Socket, Upgrade

app = App()


async def _later(ws: Socket, message: str | bytes) -> None:
    """Never runs: refused as a callback, closed unrun when returned."""
    ws.send("ran")


#: What ``on_message`` said of an ``async def`` when this component was built.
refused = "not refused"
try:
    App().on_message(cast(Any, _later))
except TypeError as e:
    refused = str(e)


@app.on_request
def arrives(req: Request) -> Upgrade | Response:
    if "deny" in req.query_params:
        return Response("denied\n", status=403, headers={"x-why": "asked"})
    if "wrong" in req.query_params:
        # What untyped Python may return: neither an Upgrade nor a Response.
        wrong: Any = {"status": 403}
        return cast(Upgrade, wrong)
    if "big" in req.query_params:
        return Upgrade(data={"name": "x" * 20_000, "agent": ""})
    protocols = req.protocols
    data = {"name": req.query_params.get("name", ""), "agent": req.header("User-Agent") or ""}
    return Upgrade(data=data, protocol=protocols[0] if protocols else None)


@app.on_open
def opened(ws: Socket) -> None:
    ws.send(json.dumps({"name": ws.data["name"], "address": ws.remote_address, "protocol": ws.protocol}))


@app.on_message
def said(ws: Socket, message: str | bytes) -> None:
    if isinstance(message, bytes):
        ws.send(message)
        return
    command, _, arg = message.partition(" ")
    if command == "rename":
        ws.data = {**ws.data, "name": arg}
        ws.send("renamed")
    elif command == "whoami":
        ws.send(ws.data["name"])
    elif command == "bad-close":
        try:
            ws.close(1004, "")
        except WshostError as e:
            ws.send(f"{str(isinstance(e, WshostError)).lower()} {type(e).__name__} {e.code} {e}")
    elif command == "sub":
        ws.send(f"{str(ws.subscribe(arg)).lower()} {subscribers(arg)}")
    elif command == "pub":
        topic, _, text = arg.partition(" ")
        ws.send(f"sent to {ws.publish(topic, text)}")
    elif command == "surrogate":
        try:
            ws.send(json.loads('"\\ud800"'))
        except ValueError as e:
            ws.send(f"refused: {e}")
        ws.send("survived")
    elif command == "throw":
        raise RuntimeError("thrown on purpose")
    elif command == "refused":
        ws.send(refused)
    elif command == "coroutine":
        # What a plain function may still return.
        return cast(None, _later(ws, message))
    else:
        ws.send(f"unknown {command}")


WitWorld = app.WitWorld
