"""Drive a wshost mirror route with Python `websockets` and permessage-deflate
(its default): small, large, incompressible, fragmented and repeated messages
must come back unchanged. Prints the agreed extension, then `ok`."""
import asyncio
import os
import sys

from websockets.asyncio.client import connect


async def main(url):
    async with connect(url, max_size=None, compression="deflate") as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert agreed.startswith("permessage-deflate"), f"no deflate agreed: {agreed!r}"
        print("extensions:", agreed)
        for i in range(10):
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"
        # Similar messages in a row: each may refer to the one before.
        for i in range(20):
            text = f"the price of item {i} is {i * 3} coins; " * 30
            await ws.send(text)
            assert await ws.recv() == text, f"repeated message {i}"
        big = "".join(f"line {i}: all work and no play\n" for i in range(40000))
        await ws.send(big)
        assert await ws.recv() == big, "1 MiB text"
        noise = os.urandom(300_000)
        await ws.send(noise)
        assert await ws.recv() == noise, "incompressible binary"
        # A fragmented compressed message: one deflate stream over 5 frames.
        parts = [f"part {i} " * 500 for i in range(5)]
        await ws.send(parts)
        assert await ws.recv() == "".join(parts), "fragmented message"
        print("ok")


asyncio.run(main(sys.argv[1]))
