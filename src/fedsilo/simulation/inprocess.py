"""``InProcessClientProxy``: a client living in the server's process, no network.

For unit tests and single-process experiments; it runs each call on a worker
thread so ``timeout`` is honoured as it is for remote clients.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

from fedsilo.client.client import Client
from fedsilo.client.message_handler import handle_instruction
from fedsilo.common.exceptions import ClientTimeout
from fedsilo.common.serde import ServerInstruction
from fedsilo.common.typing import DisconnectRes, ReconnectIns
from fedsilo.simulation.proxy import DispatchingClientProxy

__all__ = ["InProcessClientProxy"]

T = TypeVar("T")


class InProcessClientProxy(DispatchingClientProxy):
    """Calls a ``Client`` object directly, with the same failure semantics as gRPC."""

    def __init__(self, cid: str, client: Client) -> None:
        super().__init__(cid)
        self.client = client.to_client()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def _call(self, ins: ServerInstruction, expected: type[T], timeout: float | None) -> T:
        run: Callable[[], object] = lambda: handle_instruction(self.client, ins)  # noqa: E731
        future = self._pool.submit(run)
        try:
            reply = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise ClientTimeout(self.cid, f"no reply within {timeout:g} s") from None
        assert isinstance(reply, expected)
        return reply

    def reconnect(
        self, ins: ReconnectIns, timeout: float | None, group_id: int | None = None
    ) -> DisconnectRes:
        reply = self._call(ins, DisconnectRes, timeout)
        self._pool.shutdown(wait=False)
        return reply
