"""The ``FlowerService.Join`` servicer: one bidirectional stream per client.

Thin on purpose: it admits or refuses the client, registers it, relays
instructions and replies through the client's bridge, and unregisters the
client when the stream ends. Every stream is served on one asyncio event loop
(``grpc.aio``): a writer that sends each instruction once it is due, and a
reader that takes the client's messages as they come, so a reply nobody asked
for (a duplicate) is seen for what it is. The round loop's threads meet the
loop only at the bridge. Replies stay bytes here unless they arrived in
chunks; they are decoded by the proxy, where a bad one becomes that client's
failure instead of breaking the stream.

Large replies from fedsilo clients arrive as chunk frames, and only a few of
them are read and held at a time (``paced_replies``): the reader of any other
stream stops after the first frame until a slot frees, and gRPC's flow control
holds the rest in the client. A slot frees once the round loop is done with the
reply (folded it into the aggregate, or kept it), or once the reply's memory is
gone. All clients of a round tend to answer at once; without pacing the server
would hold every reply in full at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import cast

import grpc
import grpc.aio

from fedsilo.common import GRPC_MAX_MESSAGE_LENGTH, chunking, serde
from fedsilo.common.exceptions import ProtocolError
from fedsilo.common.memory import BufferPool
from fedsilo.server.client_manager import ClientManager
from fedsilo.server.grpc.auth import ClientAllowlist
from fedsilo.server.grpc.bridge import NOT_DUE, InstructionBridge
from fedsilo.server.grpc.client_proxy import DEFAULT_FIT_REPLY_FACTOR, GrpcClientProxy

log = logging.getLogger("fedsilo.server")

__all__ = ["FederationServicer", "ReplySlots", "SERVICE_NAME"]

SERVICE_NAME = "flwr.proto.FlowerService"
_DISCONNECT_RES_TAG = b"\x0a"  # ClientMessage field 1 (disconnect_res), length-delimited
DEFAULT_PACED_REPLIES = 2  # large replies read at once; FEDSILO_PACED_REPLIES overrides
PACING_WAIT_S = 10.0  # a reader that waited this long for a slot reads on without one
_CUT_OFF = "gRPC ended the call (the client cancelled it or its connection dropped)"
_CUT_OFF_GRACE_S = 0.2  # how long a stream whose requests ended waits to see it was cut off


class FederationServicer:
    """Serves ``Join`` streams for a client manager, on a ``grpc.aio`` server's loop.

    ``allowlist``: only clients whose TLS certificate carries an enrolled public
    key are registered; the others are refused before any instruction.
    ``max_message_length`` is the server's gRPC message limit, announced to
    fedsilo clients as the largest chunk frame the server reads.
    A reply in chunks is read only as the answer to the instruction in flight on its
    stream, and only up to what that instruction allows (``fit_reply_factor`` times
    the parameters a FitIns sent; see ``GrpcClientProxy.reply_limit``), never beyond
    ``max_transfer``: anything else is refused at its first frame and ends the stream.
    """

    def __init__(
        self,
        client_manager: ClientManager,
        *,
        max_message_length: int = GRPC_MAX_MESSAGE_LENGTH,
        allowlist: ClientAllowlist | None = None,
        max_transfer: int = chunking.DEFAULT_MAX_TRANSFER,
        paced_replies: int | None = None,
        fit_reply_factor: float = DEFAULT_FIT_REPLY_FACTOR,
    ) -> None:
        if paced_replies is None:
            paced_replies = int(os.environ.get("FEDSILO_PACED_REPLIES", DEFAULT_PACED_REPLIES))
        if paced_replies < 1:
            raise ValueError(f"paced_replies must be at least 1, got {paced_replies}")
        if not fit_reply_factor > 0:
            raise ValueError(f"fit_reply_factor must be positive, got {fit_reply_factor}")
        self.client_manager = client_manager
        self.max_message_length = max_message_length
        self.allowlist = allowlist
        self.max_transfer = max_transfer
        self.fit_reply_factor = fit_reply_factor
        self._serial = itertools.count(1)
        self._reply_slots = ReplySlots(paced_replies)
        # Large replies are assembled in buffers kept for the next ones: one per slot, and
        # one for a reply the round loop still folds while the slots read the next.
        self._buffers = BufferPool(paced_replies + 1)
        self._readers: set[asyncio.Task[None]] = set()  # touched on the loop only
        self._wakeups: _Wakeups | None = None  # made on the loop, by the first stream

    async def Join(  # noqa: N802 - the protocol's method name
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        refusal = self._refusal(context)
        if refusal is not None:
            log.warning("refused a client at %s: %s", context.peer(), refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        peer_limit = chunking.parse_announcement(context.invocation_metadata())
        await context.send_initial_metadata(chunking.announce(self.max_message_length))
        cid = f"{context.peer()}#{next(self._serial)}"
        due = asyncio.Event()
        if self._wakeups is None:
            self._wakeups = _Wakeups(asyncio.get_running_loop())
        bridge = InstructionBridge(cid, on_change=self._wakeups.waker(due))
        proxy = GrpcClientProxy(cid, bridge, max_message_length=self.max_message_length,
                                peer_limit=peer_limit, fit_reply_factor=self.fit_reply_factor)
        if not self.client_manager.register(proxy):
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"client id {cid} is taken")
        violation: list[str] = []
        reader = asyncio.create_task(self._read_replies(request_iterator, proxy, violation),
                                     name=f"fedsilo-replies-{cid}")
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        try:
            await self._send_instructions(proxy, context, due)
        except asyncio.CancelledError:
            # gRPC ended the call under the handler: the client cancelled it, its connection
            # dropped, or gRPC refused a message it sent.
            self._release(proxy, self._ended(proxy, _CUT_OFF))
            raise
        finally:
            self._release(proxy, self._ended(proxy))
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if violation:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, violation[0])

    async def end_streams(self) -> None:
        """Cancel the readers of streams whose handlers are gone (after the server stopped)."""
        readers = list(self._readers)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    async def _send_instructions(self, proxy: GrpcClientProxy,
                                 context: grpc.aio.ServicerContext, due: asyncio.Event) -> None:
        """Write each instruction once it is due, until the bridge closes."""
        bridge = proxy.bridge
        while True:
            outgoing = bridge.poll_message()
            if outgoing is NOT_DUE:
                due.clear()
                outgoing = bridge.poll_message()  # a change between the poll and clear()
                if outgoing is NOT_DUE:
                    await due.wait()
                    continue
            if outgoing is None:
                return
            try:
                await _write(context, outgoing)
            except Exception as exc:  # the stream is gone, whatever gRPC raised
                self._release(proxy, self._ended(proxy, f"writing to it failed "
                                                        f"({type(exc).__name__})"))
                return

    def _refusal(self, context: grpc.aio.ServicerContext) -> str | None:
        if self.allowlist is None:
            return None
        certificates = context.auth_context().get("x509_pem_cert") or [None]
        admitted, reason = self.allowlist.admits(certificates[0])
        return None if admitted else reason

    async def _read_replies(self, requests: AsyncIterator[bytes], proxy: GrpcClientProxy,
                            violation: list[str]) -> None:
        """Hand each reply to the bridge until the stream ends or breaks the protocol."""
        bridge = proxy.bridge
        assembler = chunking.ChunkAssembler(serde.client_message_from_bytes,
                                            max_transfer=self.max_transfer, pool=self._buffers)
        reason = None
        slot = False  # whether this stream holds one of the slots for large replies
        try:
            async for data in requests:
                reply: object = data
                if chunking.is_frame(data):
                    try:
                        if not assembler.busy and not slot:
                            # The first frame of a large reply: checked against what the
                            # instruction in flight allows, then a slot, before a buffer is
                            # taken for it.
                            allowance = bridge.reply_allowance()
                            if allowance is None:
                                self._violated(bridge, violation, _unasked(data, "chunk frames"))
                                return
                            assembler.check_first(data, min(allowance, self.max_transfer))
                            slot = await self._take_slot(bridge)
                        reply = assembler.feed(data)
                    except ProtocolError as exc:
                        bridge.deliver(exc)
                        what = ("refused a chunked reply at its first frame"
                                if isinstance(exc, chunking.TooLarge)
                                else "unreadable chunk frames")
                        self._violated(bridge, violation, f"{what}: {exc}")
                        return
                    if reply is None:
                        continue
                release = None
                view, assembler.last_view = assembler.last_view, None
                if slot:
                    # The slot goes with the reply: freed when the round loop is done with
                    # it, or at the latest when the reply's view of its buffer is freed.
                    release = _ReleaseOnce(self._reply_slots)
                    if view is not None:
                        weakref.finalize(view, release)
                    slot = False
                del view  # the reply's tensors keep it alive as long as they are needed
                if not bridge.deliver(reply, release):
                    self._violated(bridge, violation, _unasked(data, "a reply"))
                    return
                if isinstance(reply, bytes) and reply.startswith(_DISCONNECT_RES_TAG):
                    bridge.close("the client disconnected at the server's request")
                    return
                # Drop this coroutine's references before waiting for the next message: a
                # model-sized reply must not stay alive for the whole next round.
                del data, reply
            # The requests end the same way when the client closed its side and when gRPC
            # ended the call; in the second case the handler is cancelled right after, and
            # says so first (see Join).
            await asyncio.sleep(_CUT_OFF_GRACE_S)
            reason = "the client closed its side of the stream"
        except asyncio.CancelledError:
            reason = "the server stopped reading"
            raise
        except Exception as exc:  # the stream is gone, whatever gRPC raised
            code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
            reason = f"reading from it failed ({type(exc).__name__} {code or ''})".replace(
                " )", ")")
        finally:
            assembler.abandon()  # a reply cut off halfway leaves no buffer to the pool
            if slot:
                self._reply_slots.release()
            self._release(proxy, self._ended(proxy, reason))

    @staticmethod
    def _violated(bridge: InstructionBridge, violation: list[str], reason: str) -> None:
        """The client broke the protocol: say so once, and end its stream."""
        violation.append(reason)
        log.warning("client %s: %s; its stream is closed", bridge.cid, reason)
        bridge.close(reason)

    async def _take_slot(self, bridge: InstructionBridge) -> bool:
        """Wait for a slot to read the rest of a large reply; False when going on without
        one (the stream closed, or PACING_WAIT_S passed: a client that stalls halfway
        through a reply delays the others by no more than that)."""
        return await self._reply_slots.take(PACING_WAIT_S, lambda: bridge.closed)

    def _ended(self, proxy: GrpcClientProxy, observed: str | None = None) -> str:
        """Why the client's stream ended: what the server saw, and where that can come
        from a reply over the message limit, how to raise it."""
        what = "the client's stream ended" + (f": {observed}" if observed else "")
        if not proxy.bridge.answering:
            return what
        what += " before it answered"
        if observed == _CUT_OFF and proxy.peer_limit is None:
            # Only a client that sends no chunks can send more than the limit at once.
            what += (f"; for a client that sends no chunks (as Flower's) this is also how "
                     f"gRPC refuses a reply over the server's message limit of "
                     f"{self.max_message_length} bytes (raise it with "
                     "start_server(grpc_max_message_length=...))")
        return what

    def _release(self, proxy: GrpcClientProxy, reason: str) -> None:
        """The stream is over: unregister the client, then fail what waits on it.

        In this order, a round that sees the client fail can no longer sample it again.
        """
        self.client_manager.unregister(proxy)
        proxy.bridge.stream_ended(reason)


def _unasked(data: bytes, what: str) -> str:
    return (f"the client sent {what} ({len(data)} bytes) while no instruction was waiting for "
            "one (a duplicate or unsolicited reply); replies can no longer be matched to "
            "instructions")


class _Wakeups:
    """Sets events on one event loop from any thread, one loop wake-up for many events.

    The round loop makes instructions due for every client at once; waking the loop once
    per client (a write to its self-pipe each) would cost a system call per client.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()
        self._lock = threading.Lock()
        self._events: list[asyncio.Event] = []

    def waker(self, event: asyncio.Event) -> Callable[[], None]:
        """A callable, safe from any thread, that sets ``event`` on the loop."""
        return functools.partial(self._set, event)

    def _set(self, event: asyncio.Event) -> None:
        if threading.get_ident() == self._thread:
            event.set()
            return
        with self._lock:
            self._events.append(event)
            if len(self._events) > 1:
                return  # a wake-up is on its way and will set this one too
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._set_all)

    def _set_all(self) -> None:
        with self._lock:
            events, self._events = self._events, []
        for event in events:
            event.set()


class ReplySlots:
    """A counting semaphore taken on an event loop and given back from any thread."""

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    async def take(self, timeout: float, give_up: Callable[[], bool]) -> bool:
        """Take a slot; False after ``timeout`` seconds or once ``give_up()`` is true
        (checked at least every 0.2 s)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                if self._free > 0:
                    self._free -= 1
                    return True
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, waiter))
            try:
                await asyncio.wait((waiter,), timeout=min(0.2, max(deadline - loop.time(), 0)))
            finally:
                with self._lock:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove((loop, waiter))
            if give_up() or loop.time() >= deadline:
                return False

    def release(self) -> None:
        with self._lock:
            self._free += 1
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:  # each retries; the one that is first takes the slot
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _ReleaseOnce:
    """Gives back one slot the first time it is called."""

    def __init__(self, slots: ReplySlots) -> None:
        self._slots: ReplySlots | None = slots
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()


async def _write(context: grpc.aio.ServicerContext, outgoing: object) -> None:
    """Write one instruction: a serialized message or its frames, one frame at a time.

    Its own coroutine, so that no local keeps a model's frames alive once written while the
    stream waits for the next instruction, which can be a round away.
    """
    frames = (outgoing,) if isinstance(outgoing, bytes) else cast(Sequence[bytes], outgoing)
    for frame in frames:
        await context.write(frame)


def add_servicer(server: grpc.aio.Server, servicer: FederationServicer) -> None:
    """Register the servicer with raw-bytes (de)serializers."""
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {"Join": grpc.stream_stream_rpc_method_handler(servicer.Join)},
    )
    server.add_generic_rpc_handlers((handler,))
