"""Opens COUNT ``Join`` streams to a server and never sends a byte on any of them.

Run: ``python silent_swarm.py ADDRESS COUNT``; it holds the streams until it is killed.
The streams share one channel and one event loop, so 500 of them cost no thread each.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc.aio

JOIN = "/flwr.proto.FlowerService/Join"


async def never(forever: asyncio.Event) -> AsyncIterator[bytes]:
    """A request stream that stays open and sends nothing."""
    await forever.wait()
    for data in ():
        yield data


async def main(address: str, count: int) -> None:
    forever = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as channel:
        join = channel.stream_stream(JOIN, request_serializer=None, response_deserializer=None)
        calls = [join(never(forever), wait_for_ready=True) for _ in range(count)]
        print(f"opened {len(calls)} streams", flush=True)
        await forever.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
