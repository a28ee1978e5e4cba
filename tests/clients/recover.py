"""Recovery after reconnects against `guests/recover-chat` (see its wire
contract), with Python's `websockets`: SCENARIO=away (a client leaves, 50
messages are published, it comes back with its last position and gets
exactly those, in order, then live ones; a stale epoch gets a reset) or
SCENARIO=race (a client that keeps reconnecting while 10,000 messages are
published sees each offset exactly once). PUBLISH_URL, if set, is another
process's /chat to publish through; BACK_URL, if set, another process's
/chat the client comes back to (in the race, every other reconnect).
Prints `ok` when every check held."""
import asyncio
import json
import os
import sys

import websockets

URL = sys.argv[1]
PUBLISH_URL = os.environ.get("PUBLISH_URL", URL)
BACK_URL = os.environ.get("BACK_URL", URL)
WAIT = 10


async def next_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


async def drain(ws, into=None):
    """Read `ws` until it closes (a publisher is a subscriber too: it must
    keep reading or be evicted)."""
    try:
        async for frame in ws:
            if into is not None:
                into.append(json.loads(frame))
    except websockets.ConnectionClosed:
        pass


def url_from(position, base=URL):
    offset, epoch = position
    return f"{base}?since={offset}&epoch={epoch}"


async def publish_and_wait(publisher, seen, texts):
    """Send `texts`; return once the publisher has heard them back (so
    they were published)."""
    for text in texts:
        await publisher.send(text)
    deadline = asyncio.get_running_loop().time() + WAIT
    while not set(texts) <= {m.get("text") for m in seen}:
        assert asyncio.get_running_loop().time() < deadline, "publishes not heard back"
        await asyncio.sleep(0.01)


async def subscribed(publisher, heard, client):
    """The position of the last message `client` got, once it gets them: a
    client is subscribed by the guest's `open`, which may finish after the
    handshake (with `--cluster` it reads Redis first), so publish until one
    arrives, then take the last that came."""
    got = None
    for attempt in range(100):
        await publish_and_wait(publisher, heard, [f"hello {attempt}"])
        try:
            got = json.loads(await asyncio.wait_for(client.recv(), 0.2))
            break
        except asyncio.TimeoutError:
            continue
    assert got is not None, "the client never got a message"
    while True:
        try:
            got = json.loads(await asyncio.wait_for(client.recv(), 0.3))
        except asyncio.TimeoutError:
            break
    assert got["text"].startswith("hello"), got
    return got


async def away():
    publisher = await websockets.connect(PUBLISH_URL)
    heard = []
    reader = asyncio.create_task(drain(publisher, heard))
    client = await websockets.connect(URL)
    first = await subscribed(publisher, heard, client)
    epoch, last = first["epoch"], first["offset"]
    await client.close()

    missed = [f"m{i}" for i in range(50)]
    await publish_and_wait(publisher, heard, missed)

    client = await websockets.connect(url_from((last, epoch), BACK_URL))
    for i, text in enumerate(missed):
        got = await next_json(client)
        assert got == {"offset": last + 1 + i, "epoch": epoch, "text": text}, (i, got)
    await publisher.send("live")
    got = await next_json(client)
    assert got == {"offset": last + 51, "epoch": epoch, "text": "live"}, got
    print(f"recovered 50 after offset {last}, then live")

    # A position of another epoch (the history it names was lost): a reset
    # first, then live messages.
    stale = await websockets.connect(url_from((last, "0123456789abcdef")))
    got = await next_json(stale)
    assert got == {"reset": True, "epoch": epoch}, got
    await publisher.send("after reset")
    got = await next_json(stale)
    assert got["text"] == "after reset" and got["offset"] == last + 52, got
    print("stale epoch: reset, then live")

    for ws in (client, stale, publisher):
        await ws.close()
    await reader


async def race():
    total = 10_000
    publisher = await websockets.connect(PUBLISH_URL)
    heard = []
    reader = asyncio.create_task(drain(publisher, heard))
    client = await websockets.connect(URL)
    # Where the stream is before the run: the last message's position.
    start = await subscribed(publisher, heard, client)
    position = (start["offset"], start["epoch"])
    base = start["offset"]

    async def publish():
        # Paced (about 2,500 a second), so the reconnects below race the
        # publishes instead of finding them all done.
        for i in range(total):
            await publisher.send(f"r{i}")
            if i % 10 == 9:
                await asyncio.sleep(0.004)

    publishing = asyncio.create_task(publish())
    got = []
    reconnects = 0
    while not got or got[-1]["offset"] < base + total:
        # Read a few, then leave and come back from the last position,
        # while the publisher goes on.
        for _ in range(1 + reconnects * 7919 % 150):
            message = await next_json(client)
            assert "reset" not in message, f"reset after {len(got)}: {message}"
            got.append(message)
            position = (message["offset"], message["epoch"])
            if message["offset"] >= base + total:
                break
        # Dropped, as a phone that changed network: no closing handshake
        # (which would also wait on the messages this client left unread).
        client.transport.abort()
        reconnects += 1
        back_to = BACK_URL if reconnects % 2 else URL
        client = await websockets.connect(url_from(position, back_to))
    await publishing
    offsets = [m["offset"] for m in got]
    assert offsets == list(range(base + 1, base + total + 1)), "a gap or a duplicate"
    for m in got:
        assert m["text"] == f"r{m['offset'] - base - 1}", m
    print(f"{total} messages over {reconnects} reconnects: no gap, no duplicate")
    for ws in (client, publisher):
        await ws.close()
    await reader


asyncio.run({"away": away, "race": race}[os.environ.get("SCENARIO", "away")]())
print("ok")
