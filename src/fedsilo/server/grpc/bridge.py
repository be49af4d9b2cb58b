"""Hands instructions from the round loop to one client's stream, and replies back.

The protocol allows one outstanding instruction per client. A request that
times out is abandoned: its late reply is read off the stream and dropped, so
it can never be taken for the answer to a later instruction, and the next
instruction waits until that reply is in. A reply that arrives while no
instruction is out (a duplicate) is reported to the stream, which closes: from
then on replies could no longer be matched to instructions.

An instruction is the bytes of one message or a sequence of chunk frames; a
reply is whatever the stream decoded (bytes, or a message reassembled from
chunks).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from fedsilo.common.exceptions import ClientDisconnected, ClientTimeout

log = logging.getLogger("fedsilo.server")

__all__ = ["NOT_DUE", "InstructionBridge", "Outgoing"]

Outgoing = bytes | Sequence[bytes]  # one message, or the chunk frames of one
NOT_DUE = object()  # poll_message: no instruction is due yet
NO_LIMIT = 2**63  # reply_limit: the instruction implies no bound of its own


class InstructionBridge:
    """A thread-safe rendezvous between the round loop and one ``Join`` stream.

    ``on_change`` is called from whichever thread made the change, whenever an
    instruction may have become due or the bridge closed: an event loop serving
    the stream polls again then. It may run with the bridge's lock held, so it
    must neither block nor call back into the bridge.
    """

    def __init__(self, cid: str, on_change: Callable[[], None] | None = None) -> None:
        self.cid = cid
        self._on_change = on_change
        self._cv = threading.Condition()
        self._outgoing: deque[tuple[int, Outgoing, int]] = deque()
        self._replies: dict[int, object | None] = {}  # ticket -> reply (None: still waiting)
        self._releases: dict[int, Callable[[], None]] = {}  # ticket -> its reply's slot
        self._notify: dict[int, Callable[[], None]] = {}  # ticket -> who waits without a thread
        self._held: Callable[[], None] | None = None  # the slot of the last reply handed out
        self._in_flight: int | None = None
        self._in_flight_limit = 0  # the reply limit of the instruction in flight
        self._tickets = itertools.count(1)
        self._closed = False
        self._farewell: bytes | None = None
        self._stream_ended = False
        self.close_reason = "the client disconnected"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def answering(self) -> bool:
        """Whether an instruction was sent and its reply has not arrived."""
        return self._in_flight is not None

    def reply_allowance(self) -> int | None:
        """The most tensor bytes a reply sent in chunks may announce now: the limit of the
        instruction in flight, or None while none is (whatever arrives then is unasked)."""
        with self._cv:
            return None if self._in_flight is None else self._in_flight_limit

    # Round-loop side --------------------------------------------------------

    def submit(self, message: Outgoing, notify: Callable[[], None] | None = None,
               reply_limit: int = NO_LIMIT) -> int:
        """Queue ``message`` (a serialized ServerMessage or its frames); return its ticket.

        ``notify`` is called once, from whichever thread, when the reply is in or the
        bridge closed: then ``collect(ticket)`` returns at once. It must not block.
        ``reply_limit`` bounds the tensor bytes of a reply that comes in chunks (see
        ``reply_allowance``).
        """
        self.release_reply()  # whoever sends the next instruction is done with the last reply
        with self._cv:
            if self._closed:
                raise ClientDisconnected(self.cid, self.close_reason)
            ticket = next(self._tickets)
            self._replies[ticket] = None
            if notify is not None:
                self._notify[ticket] = notify
            self._outgoing.append((ticket, message, reply_limit))
            self._cv.notify_all()
            self._changed()
        return ticket

    def collect(self, ticket: int) -> object:
        """The reply to ``ticket``, once it is in; ``ClientDisconnected`` if the bridge
        closed first. A caller that stops waiting calls ``abandon`` instead."""
        with self._cv:
            reply = self._replies.get(ticket)
            if reply is None:
                if not self._closed:
                    raise RuntimeError(f"client {self.cid}: no reply to collect yet")
                self._abandon(ticket)
                raise ClientDisconnected(self.cid, self.close_reason)
            del self._replies[ticket]
            self._notify.pop(ticket, None)
            self._held = self._releases.pop(ticket, None)
            return reply

    def abandon(self, ticket: int) -> None:
        """Stop waiting for ``ticket``: its reply, when it comes, is read and dropped."""
        with self._cv:
            self._abandon(ticket)

    def request(self, message: Outgoing, timeout: float | None,
                reply_limit: int = NO_LIMIT) -> object:
        """Send ``message`` and wait for the reply (``submit``, wait, ``collect``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ticket = self.submit(message, reply_limit=reply_limit)
        with self._cv:
            while self._replies.get(ticket) is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    self._abandon(ticket)
                    raise ClientTimeout(self.cid, f"no reply within {timeout:g} s")
                self._cv.wait(remaining)
            return self.collect(ticket)

    def release_reply(self) -> None:
        """Say that the last reply ``request`` returned is consumed (its slot, if it holds
        one of the server's slots for large replies, goes to the next reply)."""
        with self._cv:
            release, self._held = self._held, None
        if release is not None:
            release()

    def _abandon(self, ticket: int) -> None:
        self._replies.pop(ticket, None)
        self._notify.pop(ticket, None)
        release = self._releases.pop(ticket, None)
        if release is not None:
            release()
        self._outgoing = deque(item for item in self._outgoing if item[0] != ticket)

    # Stream side ------------------------------------------------------------

    def next_message(self) -> Outgoing | None:
        """Block until an instruction is due; None once the bridge is closed.

        An instruction is due once the previous one was answered. A bridge
        closed with a farewell message hands that message out once (after the
        reply in flight, if any) before it reports closed.
        """
        with self._cv:
            while (message := self._take_due()) is NOT_DUE:
                self._cv.wait()
            return message  # type: ignore[return-value]

    def poll_message(self) -> Outgoing | None | object:
        """``next_message`` without waiting: ``NOT_DUE`` when it would wait."""
        with self._cv:
            return self._take_due()

    def _take_due(self) -> Outgoing | None | object:
        if not self._closed and (not self._outgoing or self._in_flight is not None):
            return NOT_DUE
        if self._closed:
            if self._farewell is not None and self._in_flight is not None \
                    and not self._stream_ended:
                return NOT_DUE  # the farewell goes after the reply in flight
            farewell, self._farewell = self._farewell, None
            return farewell
        ticket, message, self._in_flight_limit = self._outgoing.popleft()
        self._in_flight = ticket
        return message

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def deliver(self, reply: object, release: Callable[[], None] | None = None) -> bool:
        """Hand the reply to the instruction in flight; False when no instruction was out.

        ``release`` frees what the reply holds on the stream's side (a slot for large
        replies); it is called once the reply is consumed, or at once for a reply that
        is dropped. A late reply to an abandoned instruction is dropped (and True
        returned).
        """
        with self._cv:
            ticket, self._in_flight = self._in_flight, None
            self._cv.notify_all()
            kept = ticket is not None and ticket in self._replies
            notify = None
            if kept:
                self._replies[ticket] = reply  # type: ignore[index]
                if release is not None:
                    self._releases[ticket] = release  # type: ignore[index]
                notify = self._notify.pop(ticket, None)  # type: ignore[arg-type]
            elif ticket is not None:
                log.warning("client %s: dropped a late reply to an abandoned instruction",
                            self.cid)
        self._changed()
        if notify is not None:
            notify()
        if not kept and release is not None:
            release()
        return ticket is not None

    def stream_ended(self, reason: str) -> None:
        """The client's side of the stream is gone: nothing more will be answered."""
        with self._cv:
            self._stream_ended = True
        self.close(reason)

    def close(self, reason: str | None = None, farewell: bytes | None = None) -> None:
        """Fail pending and future requests; ``farewell`` is still sent to the client.

        Whatever slots this client's replies hold are given back: nobody may be left to
        say it is done with them.
        """
        with self._cv:
            if not self._closed:
                if reason is not None:
                    self.close_reason = reason
                self._farewell = farewell
            self._closed = True
            releases = list(self._releases.values())
            if self._held is not None:
                releases.append(self._held)
            self._releases.clear()
            self._held = None
            waiting, self._notify = list(self._notify.values()), {}
            self._cv.notify_all()
        self._changed()
        for release in releases:
            release()
        for notify in waiting:
            notify()
