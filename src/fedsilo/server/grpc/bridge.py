"""Hands instructions from the round loop to one client's stream, and replies back.

The protocol allows one outstanding instruction per client. A request that
times out is abandoned: its late reply is read off the stream and dropped, so
it can never be taken for the answer to a later instruction.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque

from fedsilo.common.exceptions import ClientDisconnected, ClientTimeout

log = logging.getLogger("fedsilo.server")

__all__ = ["InstructionBridge"]


class InstructionBridge:
    """A thread-safe rendezvous between the round loop and one ``Join`` stream."""

    def __init__(self, cid: str) -> None:
        self.cid = cid
        self._cv = threading.Condition()
        self._outgoing: deque[tuple[int, bytes]] = deque()
        self._replies: dict[int, bytes | None] = {}  # ticket -> reply (None: still waiting)
        self._in_flight: int | None = None
        self._tickets = itertools.count(1)
        self._closed = False
        self._farewell: bytes | None = None
        self.close_reason = "the client disconnected"

    @property
    def closed(self) -> bool:
        return self._closed

    # Round-loop side --------------------------------------------------------

    def request(self, message: bytes, timeout: float | None) -> bytes:
        """Send ``message`` (serialized ServerMessage) and wait for the reply's bytes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            if self._closed:
                raise ClientDisconnected(self.cid, self.close_reason)
            ticket = next(self._tickets)
            self._replies[ticket] = None
            self._outgoing.append((ticket, message))
            self._cv.notify_all()
            while self._replies.get(ticket) is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._abandon(ticket)
                    raise ClientTimeout(self.cid, f"no reply within {timeout:g} s")
                self._cv.wait(remaining)
            reply = self._replies.pop(ticket, None)
            if reply is None:
                self._abandon(ticket)
                raise ClientDisconnected(self.cid, self.close_reason)
            return reply

    def _abandon(self, ticket: int) -> None:
        self._replies.pop(ticket, None)
        self._outgoing = deque(item for item in self._outgoing if item[0] != ticket)

    # Stream side ------------------------------------------------------------

    def next_message(self) -> bytes | None:
        """Block until an instruction is due; None once the bridge is closed.

        A bridge closed with a farewell message hands that message out once
        before it reports closed.
        """
        with self._cv:
            while not self._outgoing and not self._closed:
                self._cv.wait()
            if self._closed:
                farewell, self._farewell = self._farewell, None
                return farewell
            ticket, message = self._outgoing.popleft()
            self._in_flight = ticket
            return message

    def deliver(self, reply: bytes) -> None:
        """Hand the reply to the instruction in flight; a reply nobody waits for is dropped."""
        with self._cv:
            ticket, self._in_flight = self._in_flight, None
            if ticket is not None and ticket in self._replies:
                self._replies[ticket] = reply
                self._cv.notify_all()
            else:
                log.warning("client %s: dropped a late reply to an abandoned instruction",
                            self.cid)

    def close(self, reason: str | None = None, farewell: bytes | None = None) -> None:
        """Fail pending and future requests; ``farewell`` is still sent to the client."""
        with self._cv:
            if not self._closed:
                if reason is not None:
                    self.close_reason = reason
                self._farewell = farewell
            self._closed = True
            self._cv.notify_all()
