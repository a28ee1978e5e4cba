"""The seed's first example: `Привет, X!` then `Как ты там, X?` for every
message; the text `close` or a Close frame ends it without a Close frame."""

import sys

from wshost import Request, WshostError, as_text
from wshost.handler import App, upgrade

app = App()


@app.handler
def echo(req: Request) -> None:
    ws = upgrade(req)
    try:
        # Each message until the peer closes (the seed's `''`).
        for message in ws:
            data = as_text(message)
            if data == "close":
                break
            ws.send(f"Привет, {data}!")
            ws.send(f"Как ты там, {data}?")
    except WshostError as e:
        # The seed's `false`: log the error and drop the connection.
        print(f"errorCode: {e}", file=sys.stderr)
    ws.terminate()


WitWorld = app.WitWorld
